// The dashboard: exchanges pushed by the mock (Server-Sent Events from /__mock/events), shown
// newest first, one <article data-request-id="..."> each. Plain JavaScript, no library, no build.
//
// Bounded: the page holds at most `pageCap` exchanges (the server says how many; it never sends
// more in one batch) and says so when it drops older ones; while paused it keeps at most as many
// waiting. Batches come at most a few times a second, each applied to the page in one go.
// Everything a client sent is shown as text (textContent), never as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const list = $("exchanges");
  const state = {
    source: null,
    pageCap: 500,
    received: 0,     // exchanges the mock recorded (and matched the filters) since the page (re)started
    paused: false,
    waiting: [],     // views received while paused, at most pageCap
    waitingCount: 0,
    providers: [],
    faults: [],
    helloDone: false,
  };

  // A token left in the URL's fragment is not needed once the page is open.
  if (new URLSearchParams(location.hash.slice(1)).has("token")) {
    history.replaceState(null, "", location.pathname + location.search);
  }

  // --- small helpers ---------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function number(n) {
    return Number(n).toLocaleString("en-US");
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function clock(seconds) {
    const date = new Date(seconds * 1000);
    const pad = (n, width) => String(n).padStart(width || 2, "0");
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) + "." +
      pad(date.getMilliseconds(), 3);
  }

  function statusClass(status) {
    return status === null || status === undefined ? "none" : Math.floor(status / 100) + "xx";
  }

  // The page's own calls to the admin API: the session cookie goes along, and this header
  // shows the mock the call comes from its page (a page of another origin cannot add it).
  async function admin(method, path, body) {
    const options = { method, credentials: "same-origin", headers: { "X-Mock-Dashboard": "1" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let payload = null;
    try { payload = await response.json(); } catch (ignored) { /* an empty answer */ }
    if (!response.ok) {
      const message = payload && payload.error ? payload.error.message : "HTTP " + response.status;
      throw new Error(message);
    }
    return payload;
  }

  // --- one exchange ----------------------------------------------------------------------------

  function statusText(view) {
    let text = view.status === null ? "no answer" : String(view.status);
    if (view.fault) text += " · fault " + view.fault + (view.fault_source ? " (" + view.fault_source + ")" : "");
    return text;
  }

  function picture(image, view, role) {
    const figure = el("figure", "picture " + role);
    let src = null;
    let full = null;
    let caption;
    if (image.link) {
      src = image.link;
      full = image.link;
      caption = "link";
    } else if (image.sha256) {
      const preview = view.previews[image.sha256];
      src = preview && preview.src;
      full = src;
      caption = (image.media_type || "base64") + " · " + bytes(image.bytes);
      if (preview && src && !preview.whole) figure.dataset.thumbnail = "true";
    } else if (image.url) {
      caption = "URL, not fetched";
    }
    if (src) {
      const img = el("img");
      img.alt = role + " " + (image.where || "");
      img.decoding = "async";
      if (image.link) img.loading = "lazy";
      img.src = src;
      img.addEventListener("click", () => openViewer(full, image, figure.dataset.thumbnail === "true"));
      figure.append(img);
    } else {
      const box = el("div", "placeholder", image.url ? hostOf(image.url) : "no picture kept");
      box.title = image.url || "Only this image's size and sha256 were kept: it came while no page was open, " +
        "or it is not an image a browser shows, or over 16 megapixels.";
      figure.append(box);
    }
    figure.append(el("figcaption", null, caption));
    figure.title = image.where || "";
    return figure;
  }

  function hostOf(url) {
    try { return new URL(url).host || url.slice(0, 40); } catch (ignored) { return url.slice(0, 40); }
  }

  function openViewer(src, image, thumbnail) {
    const dialog = $("viewer");
    $("viewer-image").src = src;
    let caption = image.where ? image.where + " · " : "";
    if (image.link) caption += image.url;
    else caption += (image.media_type || "base64") + ", " + bytes(image.bytes) + ", sha256 " + image.sha256;
    if (thumbnail) caption += " · a thumbnail: the journal keeps the image's hash, not all of it";
    $("viewer-caption").textContent = caption;
    if (!dialog.open) dialog.showModal();
  }

  function card(view) {
    const article = el("article", "exchange status-" + statusClass(view.status) + (view.fault ? " fault" : ""));
    article.dataset.requestId = view.request_id || "";
    article.dataset.id = view.id;
    article.dataset.status = view.status === null ? "" : view.status;

    const line = el("div", "line");
    const time = el("time", "time", clock(view.time));
    time.dateTime = new Date(view.time * 1000).toISOString();
    line.append(time);
    line.append(el("span", "provider", view.provider || "—"));
    const call = el("span", "call");
    call.append(el("b", null, view.method), " ", view.path + (view.query ? "?" + view.query : ""));
    line.append(call);
    line.append(el("span", "status", statusText(view)));
    line.append(el("span", "duration", view.duration_ms + " ms"));
    if (view.session) line.append(el("span", "session", "session " + view.session));
    const copy = el("button", "copy-curl", "Copy as curl");
    copy.type = "button";
    copy.addEventListener("click", () => copyCurl(view.curl, copy));
    line.append(copy);
    article.append(line);

    if (view.inputs.length || view.outputs.length) {
      const pictures = el("div", "pictures");
      for (const image of view.inputs) pictures.append(picture(image, view, "input"));
      if (view.outputs.length) {
        pictures.append(el("span", "arrow", "→"));
        for (const image of view.outputs) pictures.append(picture(image, view, "output"));
      }
      article.append(pictures);
    }

    if (view.error) {
      const error = el("p", "error-line");
      error.append(el("span", "message", view.error.message || "(no message)"));
      if (view.error.code) error.append(el("span", "code", view.error.code));
      if (view.error.rule) {
        error.append(el("span", "rule", "rule " + view.error.rule + " · source " + (view.error.source || "?")));
      }
      article.append(error);
    }

    const details = el("details", "more");
    details.append(el("summary", null, "Request and response"));
    details.addEventListener("toggle", () => {
      if (details.open && details.childElementCount === 1) fillDetails(details, view);
    }, { once: false });
    article.append(details);
    return article;
  }

  function pretty(part) {
    if (part.body !== null && part.body !== undefined) return JSON.stringify(part.body, null, 2);
    if (part.preview) return part.preview;
    return part.bytes ? "(" + bytes(part.bytes) + ", not kept)" : "(empty)";
  }

  function headerText(headers) {
    return Object.entries(headers).map(([name, value]) => name + ": " + value).join("\n");
  }

  function fillDetails(details, view) {
    const grid = el("div", "detail-grid");
    for (const [title, part] of [["Request", view.request], ["Response", view.response]]) {
      const column = el("div", "detail");
      column.append(el("h3", null, title + (part.bytes ? " · " + bytes(part.bytes) : "")));
      column.append(el("pre", "headers", headerText(part.headers)));
      column.append(el("pre", "body " + title.toLowerCase() + "-body", pretty(part)));
      grid.append(column);
    }
    details.append(grid);
    if (view.error && view.error.violations.length) {
      details.append(el("h3", null, "Every rule the request broke"));
      const violations = el("ul", "violations");
      for (const violation of view.error.violations) violations.append(el("li", null, violation));
      details.append(violations);
    }
    details.append(el("h3", null, "curl"));
    details.append(el("pre", "curl", view.curl));
  }

  async function copyCurl(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (ignored) {
      // No clipboard permission (a page over plain http on another host): copy the old way.
      const area = el("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy as curl"; }, 1500);
  }

  // --- the list ----------------------------------------------------------------------------------

  // Drawing is sliced: at most RENDER_BUDGET_MS of it a frame, so a burst never holds the page
  // up. What waits to be drawn is capped like the list (and a hidden tab draws nothing until
  // it is shown again).
  const RENDER_BUDGET_MS = 12;
  const RENDER_CHUNK = 20;
  const pending = [];  // views to draw, oldest first
  let drawing = false;

  function show(views) {
    if (!views.length) return;
    pending.push(...views);
    if (pending.length > state.pageCap) pending.splice(0, pending.length - state.pageCap);
    if (!drawing) {
      drawing = true;
      requestAnimationFrame(draw);
    }
  }

  function draw() {
    const started = performance.now();
    // Oldest first, each chunk above the one before: the list stays newest first.
    while (pending.length && performance.now() - started < RENDER_BUDGET_MS) {
      const chunk = pending.splice(0, RENDER_CHUNK);
      const fragment = document.createDocumentFragment();
      for (let i = chunk.length - 1; i >= 0; i--) fragment.append(card(chunk[i]));
      list.prepend(fragment);
      while (list.childElementCount > state.pageCap) list.lastElementChild.remove();
    }
    updateCounts();
    drawing = pending.length > 0;
    if (drawing) requestAnimationFrame(draw);
  }

  function updateCounts() {
    const shown = list.childElementCount;
    $("counts").textContent = state.received
      ? number(state.received) + " exchange" + (state.received === 1 ? "" : "s") + " · showing " + number(shown)
      : "no exchanges yet";
    const capped = state.received > shown;
    const notice = $("cap-notice");
    notice.hidden = !capped;
    notice.textContent = capped
      ? "Showing the latest " + number(shown) + " of " + number(state.received) +
        ": the page holds at most " + number(state.pageCap) + " exchanges."
      : "";
    const paused = $("paused-notice");
    paused.hidden = !state.paused;
    paused.textContent = state.paused ? "Paused: " + number(state.waitingCount) + " new" +
      (state.waitingCount > state.pageCap ? " (the latest " + number(state.pageCap) + " kept)" : "") : "";
  }

  function reset() {
    pending.length = 0;
    list.replaceChildren();
    state.received = 0;
    state.waiting = [];
    state.waitingCount = 0;
  }

  function onBatch(batch) {
    if (batch.reset || batch.cleared) reset();
    state.received += batch.exchanges.length + batch.skipped + batch.missed;
    if (batch.scenarios) showScenarios(batch.scenarios);
    if (state.paused) {
      state.waiting.push(...batch.exchanges);
      state.waitingCount += batch.exchanges.length + batch.skipped + batch.missed;
      if (state.waiting.length > state.pageCap) state.waiting.splice(0, state.waiting.length - state.pageCap);
    } else {
      show(batch.exchanges);
    }
    updateCounts();
  }

  function onHello(hello) {
    state.pageCap = hello.page_cap;
    $("worker").textContent = "worker " + hello.worker;
    $("logout").hidden = !hello.admin_token;
    const workers = $("workers-note");
    workers.hidden = hello.workers <= 1;
    workers.textContent = hello.workers > 1
      ? "This mock runs " + hello.workers + " workers, each with its own journal and scenarios: this page " +
        "shows worker " + hello.worker + "'s exchanges only (a reload may reach another worker), and a " +
        "scenario added here goes to whichever worker takes the request."
      : "";
    const journal = $("journal-note");
    journal.hidden = hello.journal !== null;
    journal.textContent = hello.journal === null ? "The journal is off (--journal-cap 0): no exchanges to show." : "";
    if (!state.helloDone) {
      fillSelect($("filter-provider"), hello.providers);
      fillSelect($("scenario-provider"), hello.providers);
      fillSelect($("scenario-fault"), hello.faults, "rate_limit");
      state.helloDone = true;
    }
  }

  function fillSelect(select, values, chosen) {
    for (const value of values) {
      const option = el("option", null, value);
      option.value = value;
      if (value === chosen) option.selected = true;
      select.append(option);
    }
  }

  // --- the stream ----------------------------------------------------------------------------------

  function filterQuery() {
    const params = new URLSearchParams();
    const form = new FormData($("filters"));
    for (const [name, value] of form.entries()) if (String(value).trim()) params.set(name, String(value).trim());
    return params.toString();
  }

  function connect() {
    if (state.source) state.source.close();
    const query = filterQuery();
    const source = new EventSource("events" + (query ? "?" + query : ""));
    state.source = source;
    setConnection("connecting", "connecting…");
    source.addEventListener("open", () => setConnection("live", "live"));
    source.addEventListener("hello", (event) => onHello(JSON.parse(event.data)));
    source.addEventListener("batch", (event) => onBatch(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (a session that ended, a bad filter): the browser will not retry by itself.
        setConnection("closed", "disconnected: reload the page");
      } else {
        setConnection("connecting", "reconnecting…");
      }
    });
  }

  function setConnection(kind, text) {
    const node = $("connection");
    node.dataset.state = kind;
    node.textContent = text;
  }

  let refilter = null;
  function filtersChanged() {
    clearTimeout(refilter);
    refilter = setTimeout(connect, 300);
  }

  // --- scenarios ---------------------------------------------------------------------------------

  function showScenarios(scenarios) {
    const items = $("scenario-list");
    items.replaceChildren();
    for (const scenario of scenarios.shown) {
      const item = el("li", "scenario" + (scenario.used_up ? " used-up" : ""));
      item.dataset.scenarioId = scenario.id;
      let what = scenario.id + " · " + (scenario.fault || "latency " + scenario.latency_ms + " ms");
      what += scenario.remaining === null ? " · no limit" : " · " + number(scenario.remaining) + " left";
      if (scenario.times !== null) what += " of " + number(scenario.times);
      const scope = [];
      if (scenario.session) scope.push("session " + scenario.session);
      if (scenario.provider) scope.push(scenario.provider);
      if (scenario.api_key) scope.push("key " + scenario.api_key);
      if (scenario.every > 1) scope.push("every " + scenario.every);
      if (scenario.after) scope.push("after " + scenario.after);
      item.append(el("span", "what", what));
      if (scope.length) item.append(el("span", "scope", scope.join(" · ")));
      item.append(el("span", "counters", number(scenario.calls) + " calls, fired " + number(scenario.fired)));
      const remove = el("button", "delete", "Delete");
      remove.type = "button";
      remove.addEventListener("click", () => act(() => admin("DELETE", "scenarios/" + encodeURIComponent(scenario.id))));
      item.append(remove);
      items.append(item);
    }
    if (!scenarios.shown.length) items.append(el("li", "none", "none"));
    const more = $("scenario-more");
    more.hidden = scenarios.total <= scenarios.shown.length;
    more.textContent = "and " + number(scenarios.total - scenarios.shown.length) + " more";
  }

  async function refreshScenarios() {
    const listing = await admin("GET", "scenarios");
    const shown = listing.scenarios.map((s) => ({ ...s, remaining: s.times === null ? null : Math.max(0, s.times - s.fired) }));
    showScenarios({ total: shown.length, shown: shown.slice(0, 200) });
  }

  async function act(action) {
    const error = $("scenario-error");
    error.hidden = true;
    try {
      await action();
      await refreshScenarios();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  }

  $("scenario-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const spec = { fault: $("scenario-fault").value, times: Number($("scenario-times").value) };
    const session = $("scenario-session").value.trim();
    if (session) spec.session = session;
    if ($("scenario-provider").value) spec.provider = $("scenario-provider").value;
    if ($("scenario-retry").value !== "") spec.retry_after_ms = Number($("scenario-retry").value);
    act(() => admin("POST", "scenarios", spec));
  });
  $("scenarios-clear").addEventListener("click", () => act(() => admin("DELETE", "scenarios")));

  // --- the toolbar -------------------------------------------------------------------------------

  $("filters").addEventListener("submit", (event) => event.preventDefault());
  for (const id of ["filter-provider", "filter-status"]) $(id).addEventListener("change", filtersChanged);
  for (const id of ["filter-session", "filter-text"]) $(id).addEventListener("input", filtersChanged);

  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    const button = $("pause");
    button.textContent = state.paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", String(state.paused));
    if (!state.paused) {
      show(state.waiting);
      state.waiting = [];
      state.waitingCount = 0;
    }
    updateCounts();
  });

  $("clear").addEventListener("click", async () => {
    try {
      await admin("DELETE", "requests");
      reset();
      updateCounts();
    } catch (failure) {
      setConnection("closed", "clear failed: " + failure.message);
    }
  });

  $("logout").addEventListener("click", async () => {
    await fetch("session", { method: "DELETE", credentials: "same-origin" });
    location.reload();
  });

  $("viewer").addEventListener("click", (event) => {
    if (event.target === $("viewer")) $("viewer").close();
  });

  connect();
})();
