// Sorts the sites table by a column when its heading is clicked (again: the other way). Cells sort by their
// data-sort value when they have one (numbers), else by their text.
document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("sites");
  if (!table) return;
  let last = -1, ascending = true;
  for (const button of table.querySelectorAll("th button")) {
    button.addEventListener("click", () => {
      const column = Number(button.dataset.column);
      ascending = column === last ? !ascending : true;
      last = column;
      const body = table.tBodies[0];
      const key = (row) => {
        const cell = row.cells[column];
        const sort = cell.dataset.sort;
        return sort !== undefined ? Number(sort) : cell.textContent.trim().toLowerCase();
      };
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = key(a), y = key(b);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      for (const row of rows) body.appendChild(row);
      table.dataset.sortedBy = `${column}:${ascending ? "up" : "down"}`;
    });
  }
});
