// Peel Playground: a Discord-like client for the local Discord-compatible server.
// Plain JS, no build step. State comes from /playground/api/state and is refreshed on every event pushed over
// /playground/ws; actions go to /playground/api/<action>, the same code path the Python test driver uses.
"use strict";

const S = {
  user: localStorage.getItem("pg-user") || "alice",
  data: null,
  channel: null,
  thread: null,
  pendingByMessage: {}, // message id -> {custom_id, interaction} being clicked (greyed until the bot answers)
  failedMessages: new Set(),
  // interaction id -> {message, outcome}: the message it came from (known once the page's request returns) and how
  // it ended ("acked" or "failed", known when its event arrives). Either may come first: the bot can acknowledge
  // before the page's own request has returned, so each side records what it knows and settle() acts once both are.
  lifecycle: {},
};
const COLORS = ["#5865f2", "#757e8a", "#3ba55c", "#faa61a", "#ed4245", "#eb459f"];
// The hover bar's reactions: three common ones, and the two Peel acts on (❌ cancels a running job or deletes your
// finished result, ✉️ DMs you the full image: bot/exts/imagine/_replies.py).
const QUICK_REACTIONS = [
  ["👍", "React 👍"], ["✅", "React ✅"], ["❤️", "React ❤️"],
  ["❌", "React ❌ (Peel: cancel your job, or delete your result)"], ["✉️", "React ✉️ (Peel: DM me the image)"],
];
const THREAD_TYPES = [10, 11, 12];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const me = () => S.data.me;
const userById = (id) => (S.data.users.find((u) => u.id === id) || (S.data.bot.id === id ? S.data.bot : null));
const channelById = (id) => S.data.channels.find((c) => c.id === id);
const displayName = (u) => (u ? u.global_name || u.username : "unknown");
const colorFor = (id) => COLORS[Number(BigInt(id) % 6n)];

function avatar(user) {
  const bg = user && user.bot ? "#5865f2" : colorFor(user ? user.id : "0");
  return h("div", { class: "avatar", style: `background:${bg}` }, displayName(user)[0].toUpperCase());
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function markdown(text) {
  let s = escapeHtml(text || "");
  // Discord's backslash escapes: the character shows as typed and takes no part in formatting.
  s = s.replace(/\\([*_~`|\\])/g, (_, c) => `&#${c.charCodeAt(0)};`);
  s = s.replace(/```([\s\S]*?)```/g, (_, code) => `<code>${code}</code>`);
  // Subtext: a line starting with "-# " shows small and muted.
  s = s.replace(/(^|\n)-# ([^\n]*)/g, '$1<span class="subtext">$2</span>');
  s = s.replace(/`([^`]+)`/g, "<code>$1</code>");
  s = s.replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>");
  s = s.replace(/(^|[^*])\*([^*]+)\*/g, "$1<i>$2</i>");
  s = s.replace(/__([^_]+)__/g, "<u>$1</u>");
  s = s.replace(/~~([^~]+)~~/g, "<s>$1</s>");
  s = s.replace(/&lt;@!?(\d+)&gt;/g, (_, id) => `<span class="mention">@${escapeHtml(displayName(userById(id)))}</span>`);
  s = s.replace(/&lt;#(\d+)&gt;/g, (_, id) => {
    const c = channelById(id);
    return `<span class="mention channel-mention" data-channel="${id}">#${escapeHtml(c ? c.name : "unknown")}</span>`;
  });
  s = s.replace(/&lt;t:(-?\d{1,13})(?::([tTdDfFsSR]))?&gt;/g, (_, unix, style) => timestampMention(Number(unix), style || "f"));
  // Masked links, [text](url) or [text](<url>), as Discord renders them in bot messages; kept aside so the
  // bare-URL rule below does not link their href again.
  const masked = [];
  s = s.replace(/\[([^\]\n]+)\]\((?:&lt;)?(https?:\/\/[^\s)]+?)(?:&gt;)?\)/g, (_, text, url) => {
    masked.push(`<a href="${url}" target="_blank" rel="noreferrer">${text}</a>`);
    return `\u0000${masked.length - 1}\u0000`;
  });
  s = s.replace(/(https?:\/\/[^\s<]+)/g, '<a href="$1" target="_blank" rel="noreferrer">$1</a>');
  s = s.replace(/\u0000(\d+)\u0000/g, (_, i) => masked[Number(i)]);
  return s;
}

// Discord's timestamp mentions, <t:unix> and <t:unix:style>, shown in the reader's time zone and locale with the
// full date as a tooltip (https://discord.com/developers/docs/reference#message-formatting-timestamp-styles):
// t 16:20, T 16:20:30, d 20/04/2021, D 20 April 2021, f (the default) 20 April 2021 16:20,
// F Tuesday, 20 April 2021 16:20, s 20/04/2021 16:20, S 20/04/2021 16:20:30, R "in 5 minutes" / "2 months ago".
const TIME = { hour: "2-digit", minute: "2-digit" };
const LONG_TIME = { ...TIME, second: "2-digit" };
const SHORT_DATE = { day: "2-digit", month: "2-digit", year: "numeric" };
const LONG_DATE = { day: "numeric", month: "long", year: "numeric" };
const TIMESTAMP_STYLES = {
  t: TIME, T: LONG_TIME, d: SHORT_DATE, D: LONG_DATE, f: { ...LONG_DATE, ...TIME },
  F: { weekday: "long", ...LONG_DATE, ...TIME }, s: { ...SHORT_DATE, ...TIME }, S: { ...SHORT_DATE, ...LONG_TIME },
};
const RELATIVE_UNITS = [["year", 365 * 86400], ["month", 30 * 86400], ["day", 86400], ["hour", 3600], ["minute", 60]];

function relativeTime(unix) {
  const seconds = unix - Date.now() / 1000;
  const [unit, size] = RELATIVE_UNITS.find(([, size]) => Math.abs(seconds) >= size) || ["second", 1];
  return new Intl.RelativeTimeFormat(undefined, { numeric: "always" }).format(Math.trunc(seconds / size), unit);
}

function timestampText(unix, style) {
  if (style === "R") return relativeTime(unix);
  return new Date(unix * 1000).toLocaleString(undefined, TIMESTAMP_STYLES[style]);
}

function timestampMention(unix, style) {
  const date = new Date(unix * 1000);
  if (Number.isNaN(date.getTime())) return `&lt;t:${unix}:${style}&gt;`; // Discord shows what it cannot read as typed
  const title = escapeHtml(date.toLocaleString(undefined, TIMESTAMP_STYLES.F));
  return `<span class="timestamp-mention" data-unix="${unix}" data-style="${style}" title="${title}">${escapeHtml(timestampText(unix, style))}</span>`;
}

// Relative timestamps count as time passes, as Discord's do.
setInterval(() => {
  for (const el of document.querySelectorAll(".timestamp-mention[data-style='R']")) {
    el.textContent = relativeTime(Number(el.dataset.unix));
  }
}, 1000);

function timeLabel(iso) {
  const d = new Date(iso);
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toDateString() === new Date().toDateString() ? `Today at ${t}` : `${d.toLocaleDateString()} ${t}`;
}

function toast(text, kind) {
  const el = h("div", { class: `toast ${kind || ""}` }, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), 4000);
}

async function api(action, body, files) {
  let init;
  if (files && files.length) {
    const form = new FormData();
    form.append("payload_json", JSON.stringify(body));
    files.forEach((f, i) => form.append(`files[${i}]`, f, f.name));
    init = { method: "POST", body: form };
  } else {
    init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }
  const resp = await fetch(`/playground/api/${action}`, init);
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error || data.message || `HTTP ${resp.status}`);
  return data;
}

// ------------------------------------------------------------------ loading
async function load() {
  const resp = await fetch(`/playground/api/state?user=${encodeURIComponent(S.user)}`);
  S.data = await resp.json();
  if (!S.channel || !channelById(S.channel)) {
    const first = S.data.channels.find((c) => c.type === 0);
    S.channel = first ? first.id : null;
  }
  if (S.thread && !channelById(S.thread)) S.thread = null;
  render();
}

let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(load, 25);
}

function connect() {
  const ws = new WebSocket(`ws://${location.host}/playground/ws`);
  ws.onmessage = (e) => {
    const ev = JSON.parse(e.data);
    const mine = S.data && ev.visible_to === me().id;
    if (ev.t === "PLAYGROUND_MODAL" && mine) openModal(ev.d);
    if (ev.t === "PLAYGROUND_INTERACTION_FAILED" && mine) {
      settle(ev.d.id, { outcome: "failed" });
      toast("This interaction failed", "error");
    }
    if (ev.t === "TYPING_START") {
      composerFor(ev.d.channel_id).showTyping(displayName(userById(ev.d.user_id)));
      return;
    }
    if (ev.t === "PLAYGROUND_INTERACTION_ACK") settle(ev.d.id, { outcome: "acked" });
    scheduleRefresh();
  };
  ws.onclose = () => setTimeout(connect, 1000);
  ws.onopen = () => scheduleRefresh();
}

// ------------------------------------------------------------------- render
function render() {
  renderSidebar();
  renderMain();
  renderThreads();
}

function renderSidebar() {
  const list = document.getElementById("channel-list");
  list.replaceChildren();
  list.append(h("div", { class: "category" }, "Text channels"));
  const texts = S.data.channels.filter((c) => c.type === 0).sort((a, b) => a.position - b.position);
  for (const c of texts) {
    list.append(channelItem(c, "#", () => { S.channel = c.id; render(); }, S.channel === c.id));
    for (const t of threadsOf(c.id)) {
      list.append(channelItem(t, "🧵", () => { S.channel = c.id; S.thread = t.id; render(); }, S.thread === t.id, "thread"));
    }
  }
  const dms = S.data.channels.filter((c) => c.type === 1);
  if (dms.length) {
    list.append(h("div", { class: "category" }, "Direct messages"));
    for (const c of dms) list.append(channelItem({ ...c, name: displayName(S.data.bot) }, "@", () => { S.channel = c.id; render(); }, S.channel === c.id));
  }
  document.getElementById("bot-status").className = S.data.bot_connected ? "online" : "";
  document.getElementById("bot-status").title = S.data.bot_connected ? "Bot connected" : "No bot connected";
  const select = document.getElementById("user-select");
  if (!select.options.length) {
    for (const u of S.data.users) select.append(h("option", { value: u.username }, displayName(u)));
    select.addEventListener("change", () => {
      S.user = select.value;
      localStorage.setItem("pg-user", S.user);
      load();
    });
  }
  select.value = S.user;
  document.getElementById("me-avatar").replaceWith(Object.assign(avatar(me()), { id: "me-avatar" }));
}

function channelItem(c, icon, onclick, active, extra) {
  return h("div", { class: `channel ${extra || ""} ${active ? "active" : ""}`, onclick, "data-channel": c.id },
    h("span", { class: "hash" }, icon), h("span", { class: "name" }, c.name));
}

function threadsOf(channelId) {
  return S.data.channels.filter((c) => THREAD_TYPES.includes(c.type) && c.parent_id === channelId);
}

function isNearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
}

// Whether a message list follows the newest message is the user's choice, made by scrolling: at the bottom it
// follows, scrolled up it stays put. It is decided on the user's scrolls, not at each render, because a render's
// images load (and grow the list) after it: measured then, a list that was at the bottom looked scrolled up.
function followNewest(el) {
  if (el.dataset.follow) return;
  el.dataset.follow = "yes";
  el.addEventListener("scroll", () => { el.dataset.follow = isNearBottom(el) ? "yes" : "no"; });
  // Image loads do not bubble; caught on the way down, they keep a following list at its bottom.
  el.addEventListener("load", () => { if (el.dataset.follow === "yes") el.scrollTop = el.scrollHeight; }, true);
}

function welcome(channel, empty) {
  const title = channel.type === 1 ? displayName(S.data.bot)
    : THREAD_TYPES.includes(channel.type) ? channel.name : `Welcome to #${channel.name}!`;
  const intro = channel.type === 1 ? `This is the beginning of your direct message history with @${displayName(S.data.bot)}.` : "";
  return h("div", { class: "welcome" }, h("h2", {}, title), intro ? h("div", { class: "intro" }, intro) : null,
    h("div", { class: "empty" }, empty ? "No messages yet. Try a slash command: type / in the box below." : ""));
}

function renderMessagesInto(el, channelId) {
  followNewest(el);
  if (el.dataset.channel !== channelId) el.dataset.follow = "yes"; // a channel opens at its newest message
  el.dataset.channel = channelId;
  const msgs = S.data.messages[channelId] || [];
  const top = el.scrollTop;
  el.replaceChildren(welcome(channelById(channelId), !msgs.length));
  let prev = null;
  for (const m of msgs) {
    el.append(renderMessage(m, prev));
    prev = m;
  }
  el.scrollTop = el.dataset.follow === "yes" ? el.scrollHeight : top;
}

function renderMain() {
  const channel = channelById(S.channel);
  const header = document.getElementById("channel-header");
  header.replaceChildren(h("span", { class: "hash" }, channel.type === 1 ? "@" : "#"),
    h("span", {}, channel.type === 1 ? displayName(S.data.bot) : channel.name),
    ...(channel.topic ? [h("span", { class: "topic" }, channel.topic)] : []));
  renderMessagesInto(document.getElementById("messages"), S.channel);
  if (!S.data.bot_connected) {
    document.getElementById("messages").prepend(h("div", { class: "offline-banner" },
      h("b", {}, "No bot is connected. "), "Point a discord.py bot at ", h("code", {}, S.data.api_base),
      " (gateway ", h("code", {}, S.data.gateway_url), ") with its token, or run ", h("code", {}, "make run"), "."));
  }
  mainComposer.setChannel(S.channel);
}

function renderThreads() {
  const list = document.getElementById("thread-list");
  const msgs = document.getElementById("thread-messages");
  const composerEl = document.getElementById("thread-composer");
  const header = document.getElementById("threads-header");
  if (S.thread) {
    const t = channelById(S.thread);
    header.replaceChildren(h("span", { class: "hash" }, "🧵"), h("span", {}, t.name),
      h("button", { class: "close", title: "Close thread", onclick: () => { S.thread = null; render(); } }, "✕"));
    list.hidden = true;
    msgs.hidden = false;
    composerEl.hidden = false;
    renderMessagesInto(msgs, S.thread);
    threadComposer.setChannel(S.thread);
    return;
  }
  header.replaceChildren(h("span", { class: "hash" }, "🧵"), h("span", {}, "Threads"));
  list.hidden = false;
  msgs.hidden = true;
  composerEl.hidden = true;
  list.replaceChildren();
  const threads = threadsOf(S.channel);
  if (!threads.length) list.append(h("div", { class: "empty" }, "No threads in this channel yet."));
  for (const t of threads) {
    const last = (S.data.messages[t.id] || []).slice(-1)[0];
    // As Discord's thread browser: the newest message's first line formatted like message content, cut by CSS.
    const preview = last ? (last.content ? markdown(last.content.split("\n")[0]) : "📎 attachment") : null;
    list.append(h("div", { class: "thread-card", onclick: () => { S.thread = t.id; render(); }, "data-thread": t.id },
      h("div", { class: "name" }, t.name),
      h("div", { class: "meta" }, `${t.message_count || 0} messages`,
        last ? [` · ${displayName(last.author)}: `, h("span", { class: "thread-preview", html: preview })] : null)));
  }
}

function renderMessage(m, prev) {
  const author = m.author;
  const grouped = prev && prev.author.id === author.id && !m.interaction_metadata && !m.referenced_message &&
    new Date(m.timestamp) - new Date(prev.timestamp) < 7 * 60 * 1000;
  const ephemeral = (m.flags & 64) !== 0;
  const loading = (m.flags & 128) !== 0;
  const el = h("div", { class: `message ${grouped ? "grouped" : ""} ${ephemeral ? "ephemeral" : ""}`, "data-message": m.id });
  if (m.referenced_message) {
    const r = m.referenced_message;
    // As Discord's client: the replied-to message's first line, formatted like message content, cut by CSS.
    const preview = r.content ? markdown(r.content.split("\n")[0]) : "📎 attachment";
    el.append(h("div", { class: "reply-ref" }, h("b", {}, `@${displayName(r.author)}`), h("span", { class: "reply-content", html: preview })));
  } else if (m.interaction_metadata) {
    const who = userById(m.interaction_metadata.user.id) || m.interaction_metadata.user;
    const name = m.interaction ? m.interaction.name : null;
    el.append(h("div", { class: "context-line" }, "↳ ", h("span", { class: "who" }, displayName(who)),
      name ? [" used ", h("span", { class: "cmd" }, `/${name}`)] : m.interaction_metadata.type === 5 ? " submitted a form" : " clicked a button"));
  }
  el.append(grouped ? h("div", {}) : avatar(author));
  const body = h("div", { class: "body" });
  if (!grouped || m.interaction_metadata) {
    body.append(h("div", { class: "message-head" }, h("span", { class: "author" }, displayName(author)),
      author.bot ? h("span", { class: "badge" }, "✓ APP") : null, h("span", { class: "timestamp" }, timeLabel(m.timestamp))));
  }
  if (loading) {
    body.append(h("div", { class: "thinking" }, h("span", { class: "loading-dots" }, `${displayName(author)} is thinking`)));
  } else if (m.content) {
    body.append(h("div", { class: "content", html: markdown(m.content) + (m.edited_timestamp ? ' <span class="edited">(edited)</span>' : "") }));
  }
  // Like Discord's client, an attachment shown as an embed's image is not shown a second time.
  const inEmbeds = new Set((m.embeds || []).flatMap((e) => [e.image && e.image.url, e.thumbnail && e.thumbnail.url]));
  const shown = (m.attachments || []).filter((a) => !inEmbeds.has(a.url));
  if (shown.length) body.append(renderAttachments(shown));
  for (const e of m.embeds || []) body.append(renderEmbed(e));
  if (m.components && m.components.length) body.append(renderComponents(m, m.components));
  if (m.reactions && m.reactions.length) body.append(renderReactions(m));
  if (m.thread) {
    const t = channelById(m.thread.id) || m.thread;
    body.append(h("div", { class: "thread-link", onclick: () => { S.thread = t.id; render(); } },
      "🧵 ", h("b", {}, t.name), ` · ${t.message_count || 0} messages ›`));
  }
  if (S.failedMessages.has(m.id)) body.append(h("div", { class: "failed" }, "⚠ This interaction failed"));
  if (ephemeral) body.append(h("div", { class: "ephemeral-note" }, "👁 Only you can see this"));
  el.append(body);
  el.append(hoverActions(m));
  body.addEventListener("click", (e) => {
    const target = e.target.closest("[data-channel]");
    if (target && target.classList.contains("channel-mention")) {
      const c = channelById(target.dataset.channel);
      if (c && THREAD_TYPES.includes(c.type)) { S.thread = c.id; render(); } else if (c) { S.channel = c.id; render(); }
    }
  });
  return el;
}

function hoverActions(m) {
  const box = h("div", { class: "hover-actions" });
  for (const [emoji, title] of QUICK_REACTIONS) {
    box.append(h("button", { title, "data-react": emoji, onclick: () => react(m, emoji, true) }, emoji));
  }
  box.append(h("button", { title: "Reply", onclick: () => composerFor(m.channel_id).replyTo(m) }, "↩"));
  const apps = S.data.commands.filter((c) => c.type === 3);
  if (apps.length) {
    const menu = h("select", { class: "apps-menu", title: "Apps", "aria-label": "Apps", onchange: async () => {
      const name = menu.value;
      menu.value = "";
      try {
        const { interaction_id } = await api("context", { user: S.user, name, message_id: m.id });
        settle(interaction_id, { message: m.id });
      } catch (err) { toast(err.message, "error"); }
    } }, h("option", { value: "" }, "Apps ▾"), apps.map((c) => h("option", { value: c.name }, c.name)));
    box.append(menu);
  }
  const channel = channelById(m.channel_id);
  if (channel && channel.type === 0 && !m.thread) {
    box.append(h("button", { title: "Create thread", onclick: () => createThread(m) }, "🧵"));
  }
  return box;
}

function composerFor(channelId) {
  return channelId === S.thread ? threadComposer : mainComposer;
}

async function react(m, emoji, add) {
  try { await api("react", { user: S.user, message_id: m.id, emoji, add }); } catch (err) { toast(err.message, "error"); }
}

async function createThread(m) {
  const name = prompt("Thread name", (m.content || "thread").replace(/\*/g, "").slice(0, 40));
  if (!name) return;
  try {
    const { thread_id } = await api("thread", { user: S.user, channel_id: m.channel_id, message_id: m.id, name });
    S.thread = thread_id;
    await load();
  } catch (err) { toast(err.message, "error"); }
}

function renderAttachments(atts) {
  const box = h("div", { class: "attachments" });
  for (const a of atts) {
    if ((a.content_type || "").startsWith("image/")) {
      box.append(h("img", { src: a.url, alt: a.filename, title: a.filename, onclick: () => lightbox(a.url), loading: "lazy" }));
    } else {
      box.append(h("div", { class: "file" }, "📄", h("div", {}, h("a", { href: a.url, download: a.filename }, a.filename),
        h("div", { class: "size" }, formatSize(a.size)))));
    }
  }
  return box;
}

function formatSize(n) {
  return n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n > 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} bytes`;
}

function lightbox(url) {
  const root = document.getElementById("modal-root");
  root.replaceChildren(h("div", { class: "backdrop lightbox", onclick: () => root.replaceChildren() }, h("img", { src: url })));
}

function renderEmbed(e) {
  const color = e.color !== undefined && e.color !== null ? `#${e.color.toString(16).padStart(6, "0")}` : "#1e1f22";
  const el = h("div", { class: "embed", style: `border-left-color:${color}` });
  if (e.author && e.author.name) el.append(h("div", { class: "embed-author" }, e.author.name));
  if (e.title) el.append(h("div", { class: "embed-title" }, e.url ? h("a", { href: e.url, target: "_blank" }, e.title) : e.title));
  if (e.description) el.append(h("div", { class: "embed-description", html: markdown(e.description) }));
  if (e.fields && e.fields.length) {
    el.append(h("div", { class: "embed-fields" }, e.fields.map((f) => h("div", { class: `embed-field ${f.inline ? "" : "full"}` },
      h("div", { class: "name" }, f.name), h("div", { class: "value", html: markdown(f.value) })))));
  }
  const fileName = (url) => decodeURIComponent(url.split("?")[0].split("/").pop());
  if (e.image && e.image.url) el.append(h("img", { class: "embed-image", src: e.image.url, alt: fileName(e.image.url), onclick: () => lightbox(e.image.url) }));
  if (e.thumbnail && e.thumbnail.url) el.append(h("img", { class: "embed-image", src: e.thumbnail.url, alt: fileName(e.thumbnail.url), style: "max-width:80px" }));
  if (e.footer && e.footer.text) el.append(h("div", { class: "embed-footer" }, e.footer.text));
  return el;
}

function renderComponents(m, comps) {
  const box = h("div", { class: "components" });
  for (const c of comps) box.append(renderComponent(m, c));
  return box;
}

function renderComponent(m, c) {
  switch (c.type) {
    case 1: return h("div", { class: "action-row" }, (c.components || []).map((x) => renderComponent(m, x)));
    case 2: return renderButton(m, c);
    case 3: case 5: case 6: case 7: case 8: return renderSelect(m, c);
    case 9: return h("div", { class: "section" }, (c.components || []).map((x) => renderComponent(m, x)), c.accessory ? renderComponent(m, c.accessory) : null);
    case 10: return h("div", { class: "content", html: markdown(c.content) });
    case 11: return h("img", { src: c.media && c.media.url, style: "max-width:80px;border-radius:4px" });
    case 12: return renderAttachments((c.items || []).map((i) => ({ url: i.media.url, content_type: "image/png", filename: i.description || "" })));
    case 14: return h("hr", { style: "border-color:#3f4147" });
    case 17: return h("div", { class: "embed" }, (c.components || []).map((x) => renderComponent(m, x)));
    default: return h("div", { class: "empty" }, `(component type ${c.type})`);
  }
}

function renderButton(m, c) {
  const label = [c.emoji ? `${c.emoji.name} ` : "", c.label || ""].join("");
  if (c.style === 5) {
    return h("a", { class: "btn s5", href: c.url, target: "_blank", rel: "noreferrer" }, label, " ↗");
  }
  const pending = (S.pendingByMessage[m.id] || {}).custom_id === c.custom_id;
  return h("button", {
    class: `btn s${c.style || 2} ${pending ? "pending" : ""}`, disabled: c.disabled || pending, "data-custom-id": c.custom_id,
    onclick: () => interact(m, "click", { custom_id: c.custom_id }),
  }, label);
}

function renderSelect(m, c) {
  let options = c.options || [];
  if (c.type === 5) options = S.data.users.map((u) => ({ label: displayName(u), value: u.id }));
  if (c.type === 8) options = S.data.channels.filter((x) => x.type === 0).map((x) => ({ label: `#${x.name}`, value: x.id }));
  if (c.type === 6) options = S.data.roles.map((r) => ({ label: r.name, value: r.id }));
  const multiple = (c.max_values || 1) > 1;
  // An option with `default: true` shows as chosen, as Discord's client shows it; the placeholder only when none
  // is (https://discord.com/developers/docs/components/reference#string-select-select-option-structure).
  const chosen = options.some((o) => o.default);
  const sel = h("select", { class: "select-menu", disabled: c.disabled, multiple, "data-custom-id": c.custom_id },
    multiple ? null : h("option", { value: "", disabled: true, selected: !chosen }, c.placeholder || "Make a selection"),
    options.map((o) => h("option", { value: o.value, selected: !!o.default }, [o.emoji ? `${o.emoji.name} ` : "", o.label].join(""))));
  const send = () => {
    const values = Array.from(sel.selectedOptions).map((o) => o.value).filter(Boolean);
    if (values.length) interact(m, "select", { custom_id: c.custom_id, values });
  };
  if (!multiple) { sel.addEventListener("change", send); return sel; }
  return h("div", { class: "action-row" }, sel, h("button", { class: "btn s1", onclick: send }, "Apply"));
}

async function interact(m, action, body) {
  const pending = { custom_id: body.custom_id, interaction: null };
  S.pendingByMessage[m.id] = pending;
  S.failedMessages.delete(m.id);
  render();
  try {
    const { interaction_id } = await api(action, { user: S.user, message_id: m.id, ...body });
    pending.interaction = interaction_id;
    settle(interaction_id, { message: m.id });
  } catch (err) {
    if (S.pendingByMessage[m.id] === pending) delete S.pendingByMessage[m.id];
    toast(err.message, "error");
    render();
  }
}

// Record what is known of an interaction (the message it came from, or how it ended) and, once both are known,
// release the message's pending button (a later click on the same message keeps its own) and mark a failure.
function settle(interactionId, known) {
  const life = (S.lifecycle[interactionId] = { ...S.lifecycle[interactionId], ...known });
  if (!life.message || !life.outcome) return;
  delete S.lifecycle[interactionId];
  const pending = S.pendingByMessage[life.message];
  if (pending && pending.interaction === interactionId) delete S.pendingByMessage[life.message];
  if (life.outcome === "failed") S.failedMessages.add(life.message);
  render();
}

function renderReactions(m) {
  const box = h("div", { class: "reactions" });
  for (const r of m.reactions) {
    const name = r.emoji.name;
    const mine = (r.users || []).includes(me().id);
    box.append(h("button", { class: `reaction ${mine ? "me" : ""}`, onclick: () => react(m, name, true), oncontextmenu: (e) => { e.preventDefault(); react(m, name, false); }, title: "Click to react, right-click to remove" },
      h("span", {}, name), h("span", { class: "count" }, r.count)));
  }
  return box;
}

// ------------------------------------------------------------------- modals
function modalFields(components) {
  const out = [];
  for (const c of components || []) {
    if (c.type === 1) for (const x of c.components || []) { if (x.type === 4) out.push({ input: x, label: x.label }); }
    if (c.type === 18 && c.component && c.component.type === 4) out.push({ input: c.component, label: c.label, description: c.description });
    if (c.type === 10) out.push({ text: c.content });
  }
  return out;
}

function openModal({ interaction_id, modal }) {
  const root = document.getElementById("modal-root");
  const fields = modalFields(modal.components);
  const inputs = {};
  const close = () => root.replaceChildren();
  const submit = async (e) => {
    e.preventDefault();
    const values = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value]));
    try { await api("modal", { user: S.user, interaction_id, values }); close(); } catch (err) { toast(err.message, "error"); }
  };
  const body = h("div", { class: "body" });
  for (const f of fields) {
    if (f.text) { body.append(h("div", { class: "content", html: markdown(f.text) })); continue; }
    const x = f.input;
    const attrs = { name: x.custom_id, placeholder: x.placeholder, required: x.required !== false, minlength: x.min_length, maxlength: x.max_length, "data-custom-id": x.custom_id };
    const el = x.style === 2 ? h("textarea", attrs) : h("input", { ...attrs, type: "text" });
    el.value = x.value || "";
    inputs[x.custom_id] = el;
    body.append(h("div", {}, h("label", {}, f.label || x.custom_id), f.description ? h("div", { class: "desc" }, f.description) : null, el));
  }
  const form = h("form", { class: "modal", onsubmit: submit, role: "dialog", "aria-label": modal.title },
    h("header", {}, "🍌 ", modal.title), body,
    h("footer", {}, h("button", { type: "button", class: "cancel", onclick: close }, "Cancel"), h("button", { type: "submit", class: "submit" }, "Submit")));
  root.replaceChildren(h("div", { class: "backdrop" }, form));
  const first = Object.values(inputs)[0];
  if (first) first.focus();
}

// ----------------------------------------------------------------- composer
function commandEntries() {
  const entries = [];
  for (const c of S.data.commands.filter((x) => (x.type || 1) === 1)) {
    const opts = c.options || [];
    const subs = opts.filter((o) => o.type === 1 || o.type === 2);
    if (!subs.length) { entries.push({ name: c.name, description: c.description, options: opts }); continue; }
    for (const s of subs) {
      if (s.type === 1) entries.push({ name: `${c.name} ${s.name}`, description: s.description, options: s.options || [] });
      else for (const leaf of s.options || []) entries.push({ name: `${c.name} ${s.name} ${leaf.name}`, description: leaf.description, options: leaf.options || [] });
    }
  }
  return entries.sort((a, b) => a.name.localeCompare(b.name));
}

class Composer {
  constructor(root) {
    this.root = root;
    this.channelId = null;
    this.reply = null;
    this.files = [];
    this.command = null;
    this.popupIndex = 0;
    this.error = h("div", { class: "error-bar", hidden: true });
    this.replyBar = h("div", { class: "reply-bar", hidden: true });
    this.filesBar = h("div", { class: "files-bar", hidden: true });
    this.form = h("div", { class: "cmd-form", hidden: true });
    this.fileInput = h("input", { type: "file", multiple: true, hidden: true, onchange: () => { this.files.push(...this.fileInput.files); this.fileInput.value = ""; this.renderBars(); } });
    this.text = h("textarea", { rows: 1, placeholder: "Message", "aria-label": "Message", oninput: () => this.onInput(), onkeydown: (e) => this.onKey(e) });
    this.row = h("div", { class: "composer-row" }, h("button", { class: "icon-btn", title: "Upload a file", onclick: () => this.fileInput.click() }, "+"), this.text, this.fileInput);
    this.popup = h("div", { class: "popup", hidden: true });
    this.typing = h("div", { class: "typing", "aria-live": "polite" });
    root.append(this.popup, h("div", { class: "composer" }, this.error, this.replyBar, this.filesBar, this.form, this.row), this.typing);
  }

  setChannel(id) {
    if (this.channelId !== id) { this.reply = null; this.files = []; this.cancelCommand(); }
    this.channelId = id;
    const c = channelById(id);
    this.text.placeholder = c.type === 1 ? `Message @${displayName(S.data.bot)}` : THREAD_TYPES.includes(c.type) ? `Message ${c.name}` : `Message #${c.name}`;
    this.renderBars();
  }

  showTyping(name) {
    this.typing.replaceChildren(h("span", { class: "loading-dots" }, h("b", {}, name), " is typing"));
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.typing.replaceChildren(), 8000);
  }

  showError(msg) { this.error.textContent = msg || ""; this.error.hidden = !msg; }

  replyTo(m) { this.reply = m; this.renderBars(); this.text.focus(); }

  renderBars() {
    this.replyBar.hidden = !this.reply;
    if (this.reply) this.replyBar.replaceChildren("Replying to ", h("b", {}, displayName(this.reply.author)), h("button", { class: "chip", onclick: () => { this.reply = null; this.renderBars(); } }, "✕"));
    this.filesBar.hidden = !this.files.length;
    this.filesBar.replaceChildren(...this.files.map((f, i) => h("span", { class: "chip" }, `📎 ${f.name}`, h("button", { onclick: () => { this.files.splice(i, 1); this.renderBars(); } }, "✕"))));
  }

  matches() {
    const q = this.text.value.slice(1).trim().toLowerCase();
    return commandEntries().filter((e) => e.name.startsWith(q) || e.name.includes(q));
  }

  onInput() {
    this.showError("");
    if (this.text.value.startsWith("/") && !this.command) this.renderPopup(); else this.popup.hidden = true;
  }

  renderPopup() {
    const items = this.matches();
    this.popup.hidden = false;
    this.popupIndex = Math.min(this.popupIndex, Math.max(items.length - 1, 0));
    this.popup.replaceChildren(h("div", { class: "title" }, items.length ? `Commands matching ${this.text.value}` : "No registered command matches"),
      ...items.map((e, i) => h("div", { class: `item ${i === this.popupIndex ? "sel" : ""}`, "data-command": e.name, onmousedown: (ev) => { ev.preventDefault(); this.pick(e); } },
        h("span", { class: "name" }, `/${e.name}`), h("span", { class: "desc" }, e.description || ""),
        h("span", { class: "args" }, e.options.map((o) => (o.required ? o.name : `[${o.name}]`)).join(" ")))));
  }

  onKey(e) {
    if (!this.popup.hidden) {
      const items = this.matches();
      if (e.key === "ArrowDown" || e.key === "ArrowUp") { e.preventDefault(); this.popupIndex = (this.popupIndex + (e.key === "ArrowDown" ? 1 : items.length - 1)) % Math.max(items.length, 1); this.renderPopup(); return; }
      if ((e.key === "Enter" || e.key === "Tab") && items.length) { e.preventDefault(); this.pick(items[this.popupIndex]); return; }
      if (e.key === "Escape") { this.popup.hidden = true; return; }
    }
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.sendMessage(); }
  }

  pick(entry) {
    this.command = entry;
    this.popup.hidden = true;
    this.text.value = "";
    this.row.hidden = true;
    this.form.hidden = false;
    this.inputs = {};
    const fields = entry.options.map((o) => this.optionField(o));
    this.form.replaceChildren(h("span", { class: "cmd-name" }, `/${entry.name}`), ...fields,
      h("button", { class: "send-btn", onclick: () => this.sendCommand(), "data-action": "send-command" }, "Send"),
      h("button", { class: "chip", title: "Cancel", onclick: () => this.cancelCommand() }, "✕"));
    const first = this.form.querySelector("input, select");
    if (first) first.focus();
  }

  optionField(o) {
    let input;
    const key = (e) => { if (e.key === "Enter") { e.preventDefault(); this.sendCommand(); } if (e.key === "Escape") this.cancelCommand(); };
    if (o.type === 11) input = h("input", { type: "file", accept: "image/*,.zip" });
    else if (o.choices && o.choices.length) input = h("select", {}, h("option", { value: "" }, ""), o.choices.map((c) => h("option", { value: c.value }, c.name)));
    else if (o.type === 5) input = h("select", {}, h("option", { value: "" }, ""), h("option", { value: "true" }, "True"), h("option", { value: "false" }, "False"));
    else if (o.type === 6 || o.type === 9) input = h("select", {}, h("option", { value: "" }, ""), S.data.users.map((u) => h("option", { value: u.username }, displayName(u))));
    else if (o.type === 7) input = h("select", {}, h("option", { value: "" }, ""), S.data.channels.filter((c) => c.type === 0).map((c) => h("option", { value: c.id }, `#${c.name}`)));
    else if (o.type === 8) input = h("select", {}, h("option", { value: "" }, ""), S.data.roles.map((r) => h("option", { value: r.name }, r.name)));
    else {
      const listId = `ac-${o.name}-${Math.random().toString(36).slice(2)}`;
      input = h("input", { type: o.type === 4 || o.type === 10 ? "number" : "text", step: o.type === 10 ? "any" : null, min: o.min_value, max: o.max_value, maxlength: o.max_length, placeholder: o.description || "", list: o.autocomplete ? listId : null, onkeydown: key });
      if (o.autocomplete) {
        const list = h("datalist", { id: listId });
        let timer = null;
        input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => this.autocomplete(o.name, list), 200); });
        input.addEventListener("focus", () => this.autocomplete(o.name, list));
        this.inputs[o.name] = { option: o, input };
        return h("span", { class: "opt", "data-option": o.name }, h("label", { class: o.required ? "required" : "" }, o.name), input, list);
      }
    }
    input.setAttribute("aria-label", o.name);
    this.inputs[o.name] = { option: o, input };
    return h("span", { class: "opt", "data-option": o.name, title: o.description || "" }, h("label", { class: o.required ? "required" : "" }, o.name), input);
  }

  collect() {
    const options = {};
    const fileOptions = [];
    const files = [];
    for (const [name, { option, input }] of Object.entries(this.inputs)) {
      if (option.type === 11) {
        if (input.files.length) { fileOptions.push(name); files.push(input.files[0]); }
      } else if (input.value !== "") {
        options[name] = input.value;
      }
    }
    return { options, fileOptions, files };
  }

  async autocomplete(focused, list) {
    const { options } = this.collect();
    try {
      const { choices } = await api("autocomplete", { user: S.user, channel_id: this.channelId, name: this.command.name, options, focused });
      list.replaceChildren(...choices.map((c) => h("option", { value: c.value }, c.name)));
    } catch (err) { this.showError(err.message); }
  }

  async sendCommand() {
    const { options, fileOptions, files } = this.collect();
    try {
      await api("command", { user: S.user, channel_id: this.channelId, name: this.command.name, options, file_options: fileOptions }, files);
      this.cancelCommand();
    } catch (err) { this.showError(err.message); }
  }

  cancelCommand() {
    this.command = null;
    this.form.hidden = true;
    this.row.hidden = false;
    this.showError("");
    this.text.focus();
  }

  async sendMessage() {
    const content = this.text.value;
    if (!content.trim() && !this.files.length) return;
    if (content.startsWith("/")) { this.showError("Pick a command from the list (Tab or Enter) to fill in its options."); return; }
    try {
      await api("message", { user: S.user, channel_id: this.channelId, content, reply_to: this.reply ? this.reply.id : null }, this.files);
      this.text.value = "";
      this.files = [];
      this.reply = null;
      this.renderBars();
    } catch (err) { this.showError(err.message); }
  }
}

const mainComposer = new Composer(document.getElementById("main-composer"));
const threadComposer = new Composer(document.getElementById("thread-composer"));
load().then(connect);
