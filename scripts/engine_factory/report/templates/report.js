// Sort (click a column heading) and filter (outcome, precision, target) the models table. Without JavaScript the
// table is simply shown in model order.
(function () {
  document.querySelectorAll(".js-only").forEach(function (e) { e.style.display = "block"; });
  var table = document.getElementById("models");
  if (!table) return;
  var body = table.tBodies[0];
  table.querySelectorAll("th.sortable").forEach(function (th, col) {
    var ascending = true;
    th.addEventListener("click", function () {
      var index = Array.prototype.indexOf.call(th.parentNode.children, th);
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[index].dataset.sort || a.cells[index].textContent;
        var y = b.cells[index].dataset.sort || b.cells[index].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? c : -c;
      });
      ascending = !ascending;
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var selects = document.querySelectorAll("#filters select");
  function apply() {
    var want = {};
    selects.forEach(function (s) { want[s.name] = s.value; });
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var n = 0;
      (r.dataset.cells || "").split(" ").forEach(function (token) {
        var p = token.split("|");  // precision|target|outcome
        if ((!want.precision || p[0] === want.precision) && (!want.target || p[1] === want.target) &&
            (!want.outcome || p[2] === want.outcome)) n++;
      });
      var show = n > 0 || (!want.precision && !want.target && !want.outcome);
      r.style.display = show ? "" : "none";
      r.querySelector(".matching").textContent = show ? n : "";
      if (show) shown++;
    });
    document.getElementById("shown").textContent = shown;
  }
  selects.forEach(function (s) { s.addEventListener("change", apply); });
})();
