// The gallery's only script: click a column header to sort the rows by it (again: reversed).
(function(){
  const table=document.getElementById('gallery');
  const body=table.tBodies[0];
  const heads=table.tHead.rows[0].cells;
  function key(row,col,kind){
    const v=row.cells[col].dataset.value;
    if(kind==='num'){const x=parseFloat(v);return isNaN(x)?-Infinity:x;}
    return (v||'').toLowerCase();
  }
  function sortBy(col){
    const th=heads[col];const kind=th.dataset.kind;
    const dir=th.getAttribute('aria-sort')==='descending'?'ascending':'descending';
    for(const h of heads){h.removeAttribute('aria-sort');}
    th.setAttribute('aria-sort',dir);
    const rows=Array.from(body.rows);
    rows.sort(function(a,b){
      const x=key(a,col,kind),y=key(b,col,kind);
      const c=x<y?-1:(x>y?1:0);
      return dir==='ascending'?c:-c;
    });
    for(const r of rows){body.appendChild(r);}
  }
  for(let i=0;i<heads.length;i++){
    const b=heads[i].querySelector('button');
    if(b){b.addEventListener('click',function(){sortBy(i);});}
  }
})();
