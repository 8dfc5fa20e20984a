/* multilabelfy annotation pages: state, keyboard, and a submission queue that never loses an answer.
 *
 * Storage (localStorage, one namespace per stage and batch, "mlf:<stage>:<batch>:"):
 *   token            the access token, moved here from the link's #token=... fragment
 *   queue            records not yet acknowledged by the collector (sent oldest first)
 *   rejected         records the collector refused (4xx), kept for export
 *   saved            {image key: record id} acknowledged by the collector
 *   draft:<key>      the page's unsaved state (labels, none, reason, comment, group)
 */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("cfg").textContent);
  var NS = "mlf:" + cfg.stage + ":" + cfg.batch + ":";
  var memory = {};

  function load(name, fallback) {
    var raw = null;
    try { raw = window.localStorage.getItem(NS + name); } catch (e) { raw = memory[name] || null; }
    if (raw === null) return fallback;
    try { return JSON.parse(raw); } catch (e) { return fallback; }
  }
  function store(name, value) {
    var raw = JSON.stringify(value);
    try { window.localStorage.setItem(NS + name, raw); } catch (e) { memory[name] = raw; }
  }
  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el) el.textContent = value; }

  /* --- the token: from the fragment into storage, out of the address bar --- */
  (function takeToken() {
    var m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!m) return;
    store("token", decodeURIComponent(m[1]));
    try { history.replaceState(null, "", window.location.pathname + window.location.search); }
    catch (e) { window.location.hash = ""; }
  })();
  function token() { return load("token", ""); }

  function apiUrl(path) {
    if (cfg.collector) return cfg.collector + path;
    return new URL(cfg.root + path.replace(/^\//, ""), window.location.href).href;
  }

  /* --- the queue --- */
  var sending = false, attempt = 0, retryTimer = null;

  function showCounts() {
    var saved = load("saved", {});
    var count = Object.keys(saved).length;
    text("saved", count.toLocaleString("en") + " of " + Number(cfg.total).toLocaleString("en") + " saved");
    var queue = load("queue", []), rejected = load("rejected", []);
    var waiting = queue.length + rejected.length;
    var q = $("queue");
    if (q) {
      q.hidden = waiting === 0;
      text("queued", queue.length + " waiting to be sent" + (rejected.length ? ", " + rejected.length + " refused" : ""));
    }
    if (cfg.kind === "batch") markBatch(saved);
  }

  function status(message, kind) {
    var el = $("status");
    if (!el) return;
    el.textContent = message;
    el.className = kind || "";
  }

  function retryLater() {
    if (retryTimer) return;
    var delay = Math.min(60000, 1000 * Math.pow(2, attempt));
    attempt += 1;
    retryTimer = window.setTimeout(function () { retryTimer = null; flush(); }, delay);
  }

  /* Send queued records oldest first; resolves true when the queue is empty. */
  function flush() {
    if (sending) return Promise.resolve(false);
    var queue = load("queue", []);
    if (!queue.length) { showCounts(); return Promise.resolve(true); }
    if (!token()) {
      status("Not sent: this browser has no access key for this batch (open your personal link).", "warn");
      showCounts();
      return Promise.resolve(false);
    }
    sending = true;
    var record = queue[0];
    return fetch(apiUrl("/api/submissions"), {
      method: "POST", mode: "cors", cache: "no-store", credentials: "omit",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
      body: JSON.stringify(record)
    }).then(function (response) {
      return response.text().then(function (body) { return { status: response.status, body: body }; });
    }).then(function (answer) {
      sending = false;
      var rest = load("queue", []).filter(function (r) { return r.id !== record.id; });
      if (answer.status >= 200 && answer.status < 300) {
        var saved = load("saved", {});
        saved[record.image] = record.id;
        store("saved", saved);
        store("queue", rest);
        attempt = 0;
        if (record.image === cfg.key) status("Saved", "ok");
        return flush();
      }
      if (answer.status >= 400 && answer.status < 500 && answer.status !== 408 && answer.status !== 429) {
        var rejected = load("rejected", []);
        var why = answer.body;
        try { why = JSON.parse(answer.body).error || why; } catch (e) { /* plain text */ }
        rejected.push({ record: record, status: answer.status, error: String(why).slice(0, 500) });
        store("rejected", rejected);
        store("queue", rest);
        status("The collector refused an answer (" + answer.status + "): " + String(why).slice(0, 200) +
               ". Use Export and send the file to the organisers.", "error");
        return flush();
      }
      throw new Error("collector answered " + answer.status);
    }).catch(function () {
      sending = false;
      var n = load("queue", []).length;
      status("Collector not reachable: " + n + " answer" + (n === 1 ? "" : "s") +
             " kept in this browser, retrying.", "warn");
      showCounts();
      retryLater();
      return false;
    });
  }

  function exportQueue() {
    var data = { stage: cfg.stage, batch: cfg.batch, exported: new Date().toISOString(),
                 queue: load("queue", []), rejected: load("rejected", []) };
    var blob = new Blob([JSON.stringify(data, null, 1)], { type: "application/json" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "multilabelfy-" + cfg.stage + "-" + cfg.batch + "-queue.json";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  /* Ask the collector what this annotator already submitted (optional endpoint). */
  function syncProgress() {
    if (!token()) return;
    fetch(apiUrl("/api/progress/me"), { mode: "cors", cache: "no-store", credentials: "omit",
                                        headers: { "Authorization": "Bearer " + token() } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !Array.isArray(data.submitted)) return;
        var saved = load("saved", {});
        data.submitted.forEach(function (key) { if (!(key in saved)) saved[key] = true; });
        store("saved", saved);
        showCounts();
        if (cfg.kind === "page" && saved[cfg.key] && !load("queue", []).length) status("Saved", "ok");
      }).catch(function () { /* no such endpoint, or offline: localStorage is enough */ });
  }

  /* --- the batch page --- */
  function markBatch(saved) {
    var links = document.querySelectorAll(".pages a");
    var next = null;
    for (var i = 0; i < links.length; i++) {
      var done = Object.prototype.hasOwnProperty.call(saved, cfg.keys[i]);
      links[i].classList.toggle("done", !!done);
      if (!done && next === null) next = links[i];
    }
    var cont = $("continue");
    if (cont) {
      if (next) { cont.href = next.getAttribute("href"); cont.textContent = next === links[0] ? "Start" : "Continue"; }
      else { cont.textContent = "All answered: review"; cont.href = links.length ? links[0].getAttribute("href") : "#"; }
    }
  }

  /* --- the image page --- */
  function setupPage() {
    var form = $("form");
    var tabs = Array.prototype.slice.call(document.querySelectorAll("[role=tab]"));
    var panels = Array.prototype.slice.call(document.querySelectorAll("[role=tabpanel]"));
    var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=l]"));
    var none = $("none"), comment = $("comment"), error = $("error");
    var reasons = Array.prototype.slice.call(document.querySelectorAll("input[name=reason]"));
    var overlay = $("overlay"), overlayImg = overlay.querySelector("img"), opener = null;
    var started = Date.now(), current = 0, submitting = false;
    var DRAFT = "draft:" + cfg.key;

    function chosen() { return boxes.filter(function (b) { return b.checked; }).map(function (b) { return +b.value; }); }
    function reason() { var r = reasons.filter(function (x) { return x.checked; })[0]; return r ? r.value : null; }

    function showGroup(index, focus) {
      current = (index + tabs.length) % tabs.length;
      tabs.forEach(function (t, i) {
        var on = i === current;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        panels[i].hidden = !on;
      });
      if (focus) tabs[current].focus();
      saveDraft(false);
    }

    function refresh() {
      var any = chosen().length > 0;
      $("reasons").classList.toggle("off", !none.checked);
      reasons.forEach(function (r) { r.disabled = !none.checked; });
      tabs.forEach(function (t, i) {
        var n = panels[i].querySelectorAll("input[name=l]:checked").length;
        t.querySelector(".count").textContent = n ? " (" + n + ")" : "";
      });
      document.body.classList.toggle("has-labels", any);
    }

    /* `edit`: the user changed an answer (not just the visible group), so it is unsaved again. */
    function saveDraft(edit) {
      var before = load(DRAFT, null);
      store(DRAFT, { labels: chosen(), none: none.checked, reason: reason(), comment: comment.value,
                     group: current, dirty: edit !== false || !!(before && before.dirty) });
    }

    function restoreDraft() {
      var d = load(DRAFT, null);
      if (!d) return;
      boxes.forEach(function (b) { b.checked = d.labels.indexOf(+b.value) >= 0; });
      none.checked = !!d.none;
      reasons.forEach(function (r) { r.checked = r.value === d.reason; });
      comment.value = d.comment || "";
      if (d.group) showGroup(d.group, false);
    }

    function changed() {
      if (!cfg.requireComment) return false;
      var now = chosen().slice().sort(function (a, b) { return a - b; });
      return now.join(",") !== cfg.pre.join(",");
    }

    function uid() {
      if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
      var bytes = new Uint8Array(16);
      crypto.getRandomValues(bytes);
      return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    }

    function fail(message, focus) {
      error.textContent = message;
      if (focus) focus.focus();
      return false;
    }

    function submit(goNext) {
      if (submitting) return;
      error.textContent = "";
      var labels = chosen();
      if (none.checked && !reason()) return fail("Choose why none of the labels fits.", reasons[0]);
      if (!none.checked && !labels.length) return fail("Tick at least one label, or \"None of these labels fit\".", null);
      if (changed() && !comment.value.trim()) return fail("Please say in the comment why you changed the pre-checked labels.", comment);
      var record = { id: uid(), stage: cfg.stage, batch: cfg.batch, image: cfg.key, labels: none.checked ? [] : labels,
                     none: none.checked, reason: none.checked ? reason() : null, comment: comment.value.trim(),
                     shown: cfg.hash, elapsed_ms: Date.now() - started, client_time: new Date().toISOString() };
      var queue = load("queue", []);
      queue = queue.filter(function (r) { return r.image !== record.image; }); // a newer answer replaces an unsent one
      queue.push(record);
      store("queue", queue);
      saveDraft(true);
      var d = load(DRAFT, {});
      d.dirty = false;
      store(DRAFT, d);
      submitting = true;
      status("Sending…", "");
      showCounts();
      var timeout = new Promise(function (resolve) { window.setTimeout(function () { resolve(false); }, 4000); });
      Promise.race([flush(), timeout]).then(function (ok) {
        submitting = false;
        var saved = load("saved", {})[cfg.key] === record.id;
        if (saved) status("Saved", "ok");
        if (goNext) window.setTimeout(function () { window.location.href = cfg.next; }, saved ? 150 : 900);
      });
    }

    function openOverlay(link) {
      opener = link;
      overlayImg.src = link.getAttribute("href");
      overlayImg.alt = link.querySelector("img").alt;
      overlay.hidden = false;
      $("close").focus();
    }
    function closeOverlay() {
      // Focus goes back to the opener's proposal (its checkbox), not the thumbnail link, so
      // that the next Enter submits as everywhere else instead of reopening the overlay.
      overlay.hidden = true;
      overlayImg.removeAttribute("src");
      var card = opener && opener.closest ? opener.closest(".p") : null;
      var box = card ? card.querySelector("input[name=l]") : null;
      if (box) box.focus(); else if (opener) opener.focus();
    }

    tabs.forEach(function (t, i) { t.addEventListener("click", function () { showGroup(i, false); }); });
    boxes.forEach(function (b) {
      b.addEventListener("change", function () { if (b.checked) none.checked = false; refresh(); saveDraft(true); });
    });
    none.addEventListener("change", function () {
      if (none.checked) boxes.forEach(function (b) { b.checked = false; });
      refresh();
      saveDraft(true);
    });
    reasons.forEach(function (r) { r.addEventListener("change", function () { saveDraft(true); }); });
    comment.addEventListener("input", function () { saveDraft(true); });
    form.addEventListener("submit", function (e) { e.preventDefault(); submit(true); });
    document.addEventListener("click", function (e) {
      var link = e.target.closest ? e.target.closest(".strip a") : null;
      if (link && !e.ctrlKey && !e.metaKey && !e.shiftKey) { e.preventDefault(); openOverlay(link); }
    });
    $("close").addEventListener("click", closeOverlay);
    overlay.addEventListener("click", function (e) { if (e.target === overlay || e.target === overlayImg) closeOverlay(); });

    document.addEventListener("keydown", function (e) {
      if (!overlay.hidden) { if (e.key === "Escape") { e.preventDefault(); closeOverlay(); } return; }
      var tag = (e.target.tagName || "").toLowerCase();
      var typing = tag === "textarea" || (tag === "input" && e.target.type === "text");
      if (typing) {
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(true); }
        if (e.key === "Escape") e.target.blur();
        return;
      }
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      if (/^[1-9]$/.test(e.key)) {
        var box = panels[current].querySelectorAll("input[name=l]")[+e.key - 1];
        if (box) { e.preventDefault(); box.click(); }
      } else if (e.key === "0") {
        e.preventDefault(); none.click();
      } else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        e.preventDefault(); showGroup(current + (e.key === "ArrowRight" ? 1 : -1), tag === "button" && e.target.getAttribute("role") === "tab");
      } else if (e.key === "Enter" && !(tag === "a" || (tag === "button" && e.target.type !== "submit"))) {
        e.preventDefault(); submit(true);
      }
    });

    restoreDraft();
    refresh();
    var saved = load("saved", {});
    var draft = load(DRAFT, null);
    if (saved[cfg.key]) status(draft && draft.dirty ? "Saved earlier; changed since" : "Saved", "ok");
  }

  if (cfg.kind === "page") setupPage();
  if (cfg.kind === "batch") { var msg = $("tokenmsg"); if (msg) msg.hidden = !!token(); }
  var exp = $("export");
  if (exp) exp.addEventListener("click", exportQueue);
  window.addEventListener("online", function () { attempt = 0; flush(); });
  showCounts();
  flush();
  syncProgress();
})();
