// The ifx node dashboard: reads the node's JSON API every few seconds and writes the figures
// into the page. Every value is written as text (never as markup): peer ids and warnings may
// quote what peers sent. Writes (pause, resume) carry the API token.
"use strict";

const REFRESH_MS = 2000;
const UNITS_PER_IFX = 1000000n;
const EPOCH_ROWS = 12;
const CHART_EPOCHS = 24;
const TOKEN_KEY = "ifx-api-token";

const state = { data: {}, token: null, paused: false, busy: false, proposals: null };

// --- formatting (tests compare the page with the API through these same rules) ---

function ifx(units) {
  const u = BigInt(units);
  const frac = String(u % UNITS_PER_IFX).padStart(6, "0");
  return `${u / UNITS_PER_IFX}.${frac} IFX`;
}

function format(fmt, v) {
  switch (fmt) {
    case "int": return String(v);
    case "ifx": return ifx(v);
    case "ifx-locked": return ifx(v.reduce((s, x) => s + (x.total - x.released), 0));
    case "ifx-unbonding": return ifx(v.reduce((s, x) => s + x[0], 0));
    case "count": return String(v.length);
    case "short": return String(v).slice(0, 16);
    case "uptime": return `${Math.floor(v / 3600)} h ${String(Math.floor((v % 3600) / 60)).padStart(2, "0")} min`;
    case "bps": return `${Math.floor(v / 100)}.${String(v % 100).padStart(2, "0")} %`;
    case "milli": return `${Math.floor(v / 1000)}.${String(v % 1000).padStart(3, "0")}`;
    default: return v === null || v === undefined ? "-" : String(v);
  }
}

function at(root, path) {
  let v = root;
  for (const k of path.split(".")) {
    if (v === null || v === undefined) return undefined;
    v = v[k];
  }
  return v;
}

// --- DOM helpers ---

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function cell(path, fmt, cls) {
  const td = el("td", cls ? { class: cls } : {});
  td.dataset.f = path;
  if (fmt) td.dataset.fmt = fmt;
  return td;
}

function fill(scope) {
  for (const e of scope.querySelectorAll("[data-f]")) {
    const v = at(state.data, e.dataset.f);
    e.textContent = v === undefined ? "-" : format(e.dataset.fmt, v);
  }
}

function say(text) {
  document.getElementById("msg").textContent = text;
}

// --- the panels that are built, not only filled ---

function lastWorkerLine(account) {
  for (let i = account.epochs.length - 1; i >= 0; i--) {
    if (account.epochs[i].worker) return account.epochs[i].worker;
  }
  return null;
}

function epochsTable(account) {
  const body = document.querySelector("#epochs tbody");
  const rows = [];
  const first = Math.max(0, account.epochs.length - EPOCH_ROWS);
  for (let i = account.epochs.length - 1; i >= first; i--) {
    const e = account.epochs[i];
    const p = `account.epochs.${i}`;
    const note = e.slash_reason || (e.worker && e.worker.excluded) || "";
    rows.push(el("tr", {}, cell(`${p}.epoch`, "int"), cell(`${p}.status`), cell(`${p}.liquid`, "ifx", "num"),
      cell(`${p}.vesting`, "ifx", "num"), cell(`${p}.slashed`, "ifx", "num"), el("td", {}, note)));
  }
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "6", class: "empty" }, "No epoch settled yet.")));
  body.replaceChildren(...rows);
}

function chart(account) {
  const NS = "http://www.w3.org/2000/svg";
  const sealed = account.epochs.filter((e) => e.status === "sealed").slice(-CHART_EPOCHS);
  const box = document.getElementById("chart");
  if (sealed.length === 0) {
    box.replaceChildren(el("p", { class: "empty" }, "No sealed epoch yet."));
    return;
  }
  const W = 600, H = 160, pad = 4;
  const top = Math.max(1, ...sealed.map((e) => Math.max(e.liquid + e.vesting, e.slashed)));
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const slot = W / sealed.length;
  const bw = Math.max(2, slot * 0.7);
  const rect = (x, y, w, h, cls, title) => {
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", x.toFixed(1));
    r.setAttribute("y", y.toFixed(1));
    r.setAttribute("width", w.toFixed(1));
    r.setAttribute("height", Math.max(0, h).toFixed(1));
    r.setAttribute("class", cls);
    const t = document.createElementNS(NS, "title");
    t.textContent = title;
    r.append(t);
    svg.append(r);
  };
  sealed.forEach((e, i) => {
    const x = i * slot + (slot - bw) / 2;
    const scale = (H - pad) / top;
    const hl = e.liquid * scale, hv = e.vesting * scale;
    rect(x, H - hl, bw, hl, "liquid", `epoch ${e.epoch}: ${ifx(e.liquid)} liquid`);
    rect(x, H - hl - hv, bw, hv, "vesting", `epoch ${e.epoch}: ${ifx(e.vesting)} vesting`);
    if (e.slashed > 0) rect(x, 0, bw / 2, e.slashed * scale, "slashed", `epoch ${e.epoch}: ${ifx(e.slashed)} slashed`);
  });
  box.replaceChildren(svg);
}

function failures(account) {
  const list = document.getElementById("failures");
  const items = account.por.last_failures.map(([epoch, by, why]) =>
    el("li", {}, `epoch ${epoch}, verifier ${by.slice(-8)}: ${why}`));
  list.replaceChildren(...items);
}

function jobs(list) {
  const body = document.querySelector("#jobs tbody");
  const rows = list.map((j, i) => {
    const pct = j.tiles > 0 ? Math.round((100 * j.tiles_done) / j.tiles) : 0;
    const fillBar = el("span");
    // Through the CSSOM: the page's policy refuses style attributes.
    fillBar.style.width = `${pct}%`;
    const bar = el("span", { class: "bar", title: `${pct}%` }, fillBar);
    const tiles = el("td", { class: "num" }, `${j.tiles_done}/${j.tiles}`);
    return el("tr", {}, cell(`jobs.${i}.job_id`, "short", "mono"), cell(`jobs.${i}.state`), tiles, el("td", {}, bar));
  });
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "No render job.")));
  body.replaceChildren(...rows);
}

function tasks(fl) {
  const body = document.querySelector("#tasks tbody");
  const rows = fl.tasks.map((t, i) => {
    const acc = t.accuracy_by_round.length ? `${(100 * t.accuracy_by_round[t.accuracy_by_round.length - 1]).toFixed(1)}%` : "-";
    return el("tr", {}, cell(`fl.tasks.${i}.task_id`, "short", "mono"), cell(`fl.tasks.${i}.state`),
      el("td", { class: "num" }, `${t.rounds_done}/${t.spec.rounds}`), el("td", { class: "num" }, acc));
  });
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "No federated task.")));
  body.replaceChildren(...rows);
}

function warnings(logs) {
  const list = document.getElementById("warnings");
  const items = logs.lines.slice(-10).reverse().map((l) => el("li", {},
    el("span", { class: `lvl ${l.level}` }, l.level), `${new Date(l.unix_ms).toLocaleTimeString()} ${l.target}: ${l.message}`));
  if (items.length === 0) items.push(el("li", { class: "empty" }, "None since the node started."));
  list.replaceChildren(...items);
}

function assumptions(estimate) {
  const ul = document.getElementById("assumptions");
  ul.replaceChildren(...estimate.assumptions.map((a) => el("li", {}, a)));
}

function proposals(gov, me) {
  // Rebuilt only when something changed: a button replaced under the pointer loses the click.
  const shown = JSON.stringify([gov.open, gov.params, me]);
  if (shown === state.proposals) return;
  state.proposals = shown;
  const rows = gov.open.map((p, i) => {
    const votes = Object.entries(p.votes);
    const mine = p.votes[me];
    const vote = el("td", {});
    if (mine === undefined) {
      for (const yes of [true, false]) {
        const b = el("button", { type: "button", class: "vote", "data-proposal": p.id, "data-yes": String(yes) },
          yes ? "Yes" : "No");
        b.addEventListener("click", () => castVote(p.id, yes));
        vote.append(b);
      }
    } else {
      vote.append(mine ? "yes" : "no");
    }
    const now = gov.params[p.proposal.param];
    return el("tr", {}, cell(`gov.open.${i}.id`, "short"), cell(`gov.open.${i}.proposal.param`),
      el("td", {}, `${p.proposal.value} (${now === undefined ? "-" : now})`), cell(`gov.open.${i}.proposal.from_epoch`, "int"),
      el("td", {}, String(votes.filter(([, y]) => y).length)), el("td", {}, String(votes.filter(([, y]) => !y).length)), vote);
  });
  if (rows.length === 0) rows.push(el("tr", { class: "empty" }, el("td", { colspan: "7" }, "No open proposal.")));
  document.querySelector("#proposals tbody").replaceChildren(...rows);
}

function header(status) {
  const pill = document.getElementById("state");
  state.paused = status.paused !== null && status.paused !== undefined;
  pill.textContent = state.paused ? `paused: ${status.paused}` : "working";
  pill.className = state.paused ? "pill paused" : "pill";
  const button = document.getElementById("pause");
  button.textContent = state.paused ? "Resume work" : "Pause work";
  button.disabled = state.busy;
  document.title = `ifx ${status.role} ${status.peer_id.slice(-6)}${state.paused ? " (paused)" : ""}`;
}

// --- reading the API ---

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function refresh() {
  try {
    const [status, account, ledger, logs, jobList, fl, estimate, gov] = await Promise.all(
      ["/status", "/account", "/ledger/stats", "/logs", "/jobs", "/fl", "/estimate", "/gov"].map(getJson));
    state.data = { status, account, ledger, logs, jobs: jobList, fl, estimate, gov };
    header(status);
    epochsTable(account);
    chart(account);
    failures(account);
    jobs(jobList);
    tasks(fl);
    warnings(logs);
    assumptions(estimate);
    proposals(gov, account.key);
    const w = lastWorkerLine(account);
    document.getElementById("ib").textContent = w ? format("milli", w.ib_milli) : "-";
    document.getElementById("required").textContent = w ? ifx(w.required_stake) : "-";
    fill(document);
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    const pill = document.getElementById("state");
    pill.textContent = "node unreachable";
    pill.className = "pill down";
    say(`Cannot read the node's API: ${e.message}`);
  }
}

// --- writing: pause and resume with the token ---

function takeTokenFromUrl() {
  const m = /(?:^#|&)token=([0-9a-fA-F]{16,128})/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    // The secret leaves the address bar and the history entry.
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem(TOKEN_KEY);
}

// POSTs `body` with the token; the node's answer, or null after saying why it failed.
async function write(path, body) {
  if (!state.token) {
    document.getElementById("token-form").hidden = false;
    say("Writes need the node's API token: run `ifx dashboard` for a link with it, or paste it here.");
    return null;
  }
  state.busy = true;
  try {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Authorization": `Bearer ${state.token}`, "Content-Type": "application/json" },
      body: body === null ? null : JSON.stringify(body),
    });
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      document.getElementById("token-form").hidden = false;
      say("The node refused the token (it makes a new one at every start): paste the current one.");
      return null;
    }
    if (!r.ok) {
      const why = await r.json().then((e) => e.error, () => `HTTP ${r.status}`);
      say(`${path}: ${why}`);
      return null;
    }
    return await r.json();
  } catch (e) {
    say(`${path} failed: ${e.message}`);
    return null;
  } finally {
    state.busy = false;
    await refresh();
  }
}

async function togglePause() {
  const resume = state.paused;
  document.getElementById("pause").disabled = true;
  const status = await write(resume ? "/resume" : "/pause", resume ? null : { reason: "paused from the dashboard" });
  if (status) say(status.paused ? "Paused: the node takes no tiles, challenges or training." : "Resumed.");
}

// "10.5" IFX as units (an integer string), or null: no float ever touches an amount.
function units(text) {
  const m = /^\s*(\d{1,12})(?:\.(\d{1,6}))?\s*$/.exec(text);
  if (!m) return null;
  const u = BigInt(m[1]) * UNITS_PER_IFX + BigInt((m[2] || "").padEnd(6, "0"));
  return u > 0n && u <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(u) : null;
}

async function sendStake(ev) {
  ev.preventDefault();
  const amount = units(document.getElementById("stake-amount").value);
  if (amount === null) {
    say("The amount: IFX with up to six decimals, more than zero (e.g. 10.5).");
    return;
  }
  const op = document.getElementById("stake-op").value;
  const body = op === "bond" ? { op, amount, role: document.getElementById("stake-role").value } : { op, amount };
  const done = await write("/stake", body);
  if (done) {
    document.getElementById("stake-amount").value = "";
    say(`${op === "bond" ? "Bond" : "Unbond"} of ${ifx(amount)} written (entry ${done.entry.slice(0, 16)}): it applies when its epoch is sealed and settled.`);
  }
}

async function castVote(proposal, yes) {
  const done = await write("/gov/votes", { proposal, yes });
  if (done) say(`Voted ${yes ? "yes" : "no"} on ${proposal.slice(0, 16)} (entry ${done.entry.slice(0, 16)}): it counts once its epoch is sealed.`);
}

function start() {
  takeTokenFromUrl();
  document.getElementById("pause").addEventListener("click", togglePause);
  document.getElementById("stake-form").addEventListener("submit", sendStake);
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = document.getElementById("token").value.trim();
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      state.token = t;
      document.getElementById("token").value = "";
      document.getElementById("token-form").hidden = true;
      say("Token kept for this tab.");
    }
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
