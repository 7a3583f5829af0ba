// Hark dashboard: live updates over server-sent events (/api/stream).
// When a turn or an event is recorded, the page's <main> is fetched again
// (?fragment=1) and swapped in; the overview also follows the periodic tick.
(() => {
  "use strict";
  const page = document.body.dataset.page;
  const live = document.getElementById("live");
  let timer = null;
  let updates = 0;

  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const response = await fetch(location.pathname + "?fragment=1", {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        });
        if (response.status === 401) { location.reload(); return; }
        if (!response.ok) return;
        document.querySelector("main").innerHTML = await response.text();
        updates += 1;
        document.body.dataset.updates = String(updates);
      } catch (error) {
        // The next update tries again.
      }
    }, 200);
  }

  if (!window.EventSource || !page) return;
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => { live.textContent = "● live"; live.className = "on"; });
  source.addEventListener("error", () => { live.textContent = "○ reconnecting"; live.className = ""; });
  source.addEventListener("turn", refresh);
  source.addEventListener("event", () => {
    if (page === "/events" || page === "/") refresh();
  });
  source.addEventListener("tick", () => {
    if (page === "/" || page === "/voice" || page === "/plugins") refresh();
  });
})();
