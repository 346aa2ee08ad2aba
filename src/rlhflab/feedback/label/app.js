"use strict";
// The labelling page. Model text is only ever assigned with textContent: it is shown as text.
(function () {
  const KEY = "rlhflab-token";
  const state = { token: null, query: null, busy: false };
  const $ = (id) => document.getElementById(id);

  function status(message, isError) {
    $("status").textContent = message || "";
    $("status").classList.toggle("error", Boolean(isError));
  }

  function setState(name) {
    document.body.dataset.state = name;
    document.body.dataset.query = state.query ? String(state.query.query_id) : "";
  }

  function readToken() {
    const match = location.hash.match(/token=([^&]+)/);
    if (match) {
      sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY);
  }

  async function api(path, body) {
    const options = { method: body === undefined ? "GET" : "POST", headers: { Authorization: "Bearer " + state.token } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const isJson = (response.headers.get("content-type") || "").includes("json");
    const data = isJson ? await response.json() : await response.text();
    if (!response.ok) {
      const detail = isJson ? data.detail : data;
      const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  async function fetchClip(query, side) {
    const response = await fetch("/api/clip/" + query.query_id + "/" + side, {
      headers: { Authorization: "Bearer " + state.token },
    });
    if (!response.ok) {
      const error = new Error("clip " + side.toUpperCase() + " of query " + query.query_id + ": HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return URL.createObjectURL(await response.blob());
  }

  async function showClips(query) {
    // fetched with the token (a <video src> could not send it), played from blob URLs; old ones are freed
    const urls = query && query.clip ? await Promise.all([fetchClip(query, "a"), fetchClip(query, "b")]) : [];
    for (const [i, side] of ["a", "b"].entries()) {
      const video = $("clip-" + side);
      if (video.src) URL.revokeObjectURL(video.src);
      if (urls.length) {
        video.src = urls[i];
        video.play().catch(() => {}); // autoplay of a muted clip; a refusal only means "press play"
      } else {
        video.removeAttribute("src");
        video.load();
      }
      video.hidden = !urls.length;
      $("text-" + side).hidden = urls.length > 0;
    }
  }

  async function show(query, progress) {
    await showClips(query);
    state.query = query;
    const none = query === null;
    const clip = !none && Boolean(query.clip);
    $("done").hidden = !none;
    $("question").textContent = clip ? "Which clip is better?" : "Which continuation is better?";
    $("prompt-title").textContent = clip ? "About these clips" : "Prompt";
    $("prompt").textContent = none ? "" : query.prompt;
    $("text-a").textContent = none ? "" : query.a;
    $("text-b").textContent = none ? "" : query.b;
    for (const button of document.querySelectorAll(".choices button[data-choice]")) button.disabled = none;
    if (progress) {
      $("progress").textContent =
        progress.yours + " answered by you · " + progress.answered + " of " + progress.queued + " pairs answered";
    }
  }

  function login(message) {
    sessionStorage.removeItem(KEY);
    $("work").hidden = true;
    $("login").hidden = false;
    status(message, Boolean(message));
    setState("login");
  }

  async function run(action) {
    if (state.busy) return;
    state.busy = true;
    setState("busy");
    try {
      await action();
    } catch (error) {
      if (error.status === 401) return login(error.message);
      status(error.message, true);
    } finally {
      state.busy = false;
      if (document.body.dataset.state === "busy") setState("ready");
    }
  }

  async function loadNext() {
    const data = await api("/api/next");
    $("labeller").textContent = "labeller: " + data.labeller;
    await show(data.query, data.progress);
  }

  function choose(choice) {
    if (!state.query) return;
    const id = state.query.query_id;
    return run(async () => {
      const saved = await api("/api/answer", { query_id: id, choice: choice });
      status("saved answer " + saved.answer_id + " (" + choice + ")");
      await loadNext();
    });
  }

  function undo() {
    return run(async () => {
      const data = await api("/api/undo", {});
      await show(data.query, data.progress);
      status("undone: answer again");
    });
  }

  async function start() {
    $("login").hidden = true;
    $("work").hidden = false;
    await run(async () => {
      $("guidelines").textContent = await api("/api/guidelines");
      $("guidelines-box").hidden = $("guidelines").textContent.trim() === "";
      await loadNext();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll(".choices button[data-choice]")) {
      button.addEventListener("click", () => {
        button.blur(); // so that the space key means "skip", not "press this button again"
        choose(button.dataset.choice);
      });
    }
    $("btn-undo").addEventListener("click", () => {
      $("btn-undo").blur();
      undo();
    });
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      sessionStorage.setItem(KEY, state.token);
      start();
    });
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
      if (["INPUT", "TEXTAREA"].includes(event.target.tagName) || $("work").hidden) return;
      const keys = { "1": "a", ArrowLeft: "a", "2": "b", ArrowRight: "b", "3": "tie", "=": "tie", " ": "skip" };
      if (event.key in keys) {
        event.preventDefault();
        choose(keys[event.key]);
      } else if (event.key === "u" || event.key === "Backspace") {
        event.preventDefault();
        undo();
      }
    });
    window.addEventListener("hashchange", () => {
      if (/token=/.test(location.hash)) {
        state.token = readToken();
        start();
      }
    });
    state.token = readToken();
    if (state.token) start();
    else login("");
  });
})();
