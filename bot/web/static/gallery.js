// Peel's gallery: shift-click selects a range of cells, and the count of selected cells is announced.
// The page works without it: every checkbox is a plain form field.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const boxes = Array.from(document.querySelectorAll("input.pick"));
  const count = document.getElementById("selected-count");
  let last = null;
  const show = () => {
    const n = boxes.filter((box) => box.checked).length;
    if (count) count.textContent = n ? `${n} selected` : "";
  };
  boxes.forEach((box, i) => {
    box.addEventListener("click", (event) => {
      if (event.shiftKey && last !== null && last !== i) {
        const [from, to] = last < i ? [last, i] : [i, last];
        for (let k = from; k <= to; k += 1) boxes[k].checked = box.checked;
      }
      last = i;
      show();
    });
  });
  show();
});
