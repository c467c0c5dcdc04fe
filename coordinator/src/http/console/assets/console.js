// Ferry's console: live updates over server-sent events. Pages work
// without this file; with it, an execution page and a running action's log
// follow the run as it goes.
"use strict";

// An execution page: `update` events carry {element id: HTML} for the parts
// that change; a part the user is typing in is left alone until they are done.
function followExecution(box) {
  const source = new EventSource(box.dataset.live);
  source.addEventListener("update", (e) => {
    const parts = JSON.parse(e.data);
    for (const [id, html] of Object.entries(parts)) {
      const el = document.getElementById(id);
      if (!el) continue;
      const busy = el.contains(document.activeElement) ||
        Array.from(el.querySelectorAll("textarea, input[type=text]")).some((f) => f.value !== "");
      if (!busy) el.innerHTML = html;
    }
  });
  source.addEventListener("end", () => source.close());
}

// A running action's log: `chunk` events carry the next piece of text.
function followLog(pre) {
  const source = new EventSource(pre.dataset.live);
  const state = document.getElementById("log-state");
  source.addEventListener("chunk", (e) => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(JSON.parse(e.data));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", () => {
    source.close();
    if (state) state.textContent = "The action's log is complete.";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("execution");
  if (box && box.dataset.live) followExecution(box);
  const pre = document.getElementById("log");
  if (pre && pre.dataset.live) followLog(pre);
});
