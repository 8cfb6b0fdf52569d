// mediagate review console: keyboard triage, live queue updates and decisions without a reload.
// Plain JavaScript, no build step. Every page also works without it (forms post to the same gateway).
(() => {
  "use strict";

  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const page = document.body.dataset.page;
  const help = document.getElementById("help");
  const flashBox = document.getElementById("flash");
  const POLL_MS = 2000;
  let selectedId = null;
  let armed = null; // {form, action}: what Enter in the reason field does

  const items = () => Array.from(document.querySelectorAll("article.item"));

  function flash(text, kind = "ok") {
    if (!flashBox) return;
    const line = document.createElement("p");
    line.className = `message ${kind}`;
    line.textContent = text;
    flashBox.prepend(line);
    while (flashBox.children.length > 4) flashBox.lastElementChild.remove();
  }

  function select(index) {
    const list = items();
    if (!list.length) { selectedId = null; return; }
    const el = list[Math.max(0, Math.min(index, list.length - 1))];
    selectedId = el.dataset.reviewId;
    list.forEach((other) => other.classList.toggle("selected", other === el));
    el.scrollIntoView({ block: "nearest" });
  }

  const selectedIndex = () => items().findIndex((el) => el.dataset.reviewId === selectedId);
  const selected = () => items()[selectedIndex()] || null;

  function refreshQueueMeta() {
    const count = items().length;
    const counter = document.getElementById("count");
    if (counter) counter.textContent = String(count);
    const empty = document.getElementById("empty");
    if (empty) empty.hidden = count > 0;
    if (selectedIndex() < 0) select(0);
  }

  function removeItem(el) {
    const index = items().indexOf(el);
    const wasSelected = el.dataset.reviewId === selectedId;
    if (armed && el.contains(armed.form)) armed = null;
    el.remove();
    if (wasSelected) select(index);
    refreshQueueMeta();
  }

  function say(form, text, kind = "hint") {
    const out = form.querySelector(".result");
    if (out) { out.textContent = text; out.className = `result ${kind}`; }
  }

  function signInAgain(reason) {
    location.assign(`/console/login?m=${encodeURIComponent(reason || "expired")}`);
  }

  async function decide(form, action) {
    const article = form.closest("article.item");
    const input = form.querySelector("input.reason");
    const reason = input.value.trim();
    if (!reason) {
      armed = { form, action };
      say(form, `A reason is required: type it, then press Enter to ${action}.`, "error");
      input.focus();
      return;
    }
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    let resp;
    let body = {};
    try {
      resp = await fetch(`/console/api/reviews/${encodeURIComponent(article.dataset.reviewId)}/${action}`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ reason }),
      });
      body = await resp.json().catch(() => ({}));
    } catch (err) {
      say(form, "The gateway could not be reached; nothing was changed.", "error");
      form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      return;
    }
    if (resp.status === 401) { signInAgain(body.reason); return; }
    form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    if (resp.status === 409 || resp.status === 404) { // decided elsewhere, or gone: it is not in the queue any more
      flash(body.detail || `Error ${resp.status}`, "error");
      if (page === "queue") removeItem(article); else location.reload();
      return;
    }
    if (!resp.ok) { say(form, body.detail || `Error ${resp.status}`, "error"); return; }
    armed = null;
    const verb = body.status === "approved" ? "Approved" : "Rejected";
    flash(`${verb} ${body.id}: audit entry ${body.audit_entry}.`);
    if (page === "queue") removeItem(article); else location.reload();
  }

  function arm(form, action) {
    armed = { form, action };
    const input = form.querySelector("input.reason");
    if (input.value.trim()) { decide(form, action); return; }
    say(form, `Reason for ${action === "approve" ? "approving" : "rejecting"}, then Enter (Esc cancels).`);
    input.focus();
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("decide")) return;
    ev.preventDefault();
    const action = ev.submitter?.value || armed?.action;
    if (action) decide(form, action);
  });

  document.addEventListener("click", (ev) => {
    const article = ev.target instanceof Element ? ev.target.closest("article.item") : null;
    if (article) select(items().indexOf(article));
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) {
      if (ev.key === "Escape") { target.blur(); armed = null; }
      if (ev.key === "Enter" && target.classList.contains("reason")) {
        ev.preventDefault(); // never a silent default: Enter does what a / r asked for, or explains
        if (armed && armed.form === target.form) decide(target.form, armed.action);
        else say(target.form, "Press the Approve or Reject button (or Esc, then a / r).", "error");
      }
      return;
    }
    if (help && !help.hidden && ev.key !== "?" && ev.key !== "Escape") return;
    const article = selected() || (items().length === 1 ? items()[0] : null);
    switch (ev.key) {
      case "j": select(selectedIndex() + 1); break;
      case "k": select(Math.max(0, selectedIndex() - 1)); break;
      case "a":
      case "r": {
        const form = article?.querySelector("form.decide");
        if (!form) return;
        arm(form, ev.key === "a" ? "approve" : "reject");
        break;
      }
      case "o": if (article) location.assign(`/console/reviews/${encodeURIComponent(article.dataset.reviewId)}`); break;
      case "?": if (help) help.hidden = !help.hidden; break;
      case "Escape": if (help) help.hidden = true; break;
      default: return;
    }
    ev.preventDefault(); // the key was a shortcut: it must not also type into the field it focused
  });

  function ages() {
    const now = Date.now();
    document.querySelectorAll("article.item header time[datetime]").forEach((el) => {
      const seconds = Math.max(0, Math.floor((now - Date.parse(el.getAttribute("datetime"))) / 1000));
      const [unit, size] = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]].find(([, n]) => seconds >= n) || ["s", 1];
      el.textContent = `${Math.floor(seconds / size)} ${unit} ago`;
    });
  }

  async function poll() {
    const known = items().map((el) => el.dataset.reviewId).join(",");
    try {
      const resp = await fetch(`/console/api/queue?known=${encodeURIComponent(known)}`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      const body = await resp.json().catch(() => ({}));
      if (resp.status === 401) { signInAgain(body.reason); return; }
      if (resp.ok) apply(body);
    } catch (err) {
      // offline for a moment: the next poll tries again
    }
    ages();
    setTimeout(poll, POLL_MS);
  }

  function apply(body) {
    const live = new Set(body.ids);
    for (const el of items()) if (!live.has(el.dataset.reviewId)) removeItem(el);
    const queue = document.getElementById("queue");
    for (const item of body.items) {
      if (document.getElementById(`item-${item.id}`)) continue;
      const tpl = document.createElement("template");
      tpl.innerHTML = item.html.trim(); // rendered and escaped by the server's templates
      const el = tpl.content.firstElementChild;
      el.classList.add("arrived");
      const later = body.ids.slice(body.ids.indexOf(item.id) + 1)
        .map((id) => document.getElementById(`item-${id}`)).find(Boolean);
      queue.insertBefore(el, later || null);
    }
    refreshQueueMeta();
  }

  if (items().length) select(0);
  if (page === "queue") setTimeout(poll, POLL_MS);
})();
