// The stand-in composer page. Plain JS, but it behaves like the real React page where that
// matters to automation: controlled input, Radix-like menu, polling, toasts.
"use strict";

(() => {
  const ASPECTS = [
    { label: "1:1", width: 480, height: 480 },
    { label: "3:2", width: 720, height: 480 },
    { label: "2:3", width: 480, height: 720 },
    { label: "16:9", width: 854, height: 480 },
    { label: "9:16", width: 480, height: 854 },
  ];
  const VARIANTS = [1, 2, 4];
  const POLL_MS = 700;
  const TOAST_MS = 6000;
  const ACTIVE = new Set(["queued", "preprocessing", "running"]);
  const RING = 2 * Math.PI * 28; // circumference of the progress ring (r = 28)
  const CONTENT_POLICY = "This content may violate our content policies.";
  const POPUPS = {
    app: {
      title: "Download the Sora mobile app",
      text: "Create and explore on the go. Scan the code with your phone to get the app.",
      actions: ["Not now"],
      close: true,
    },
    announcement: {
      title: "Introducing remix, blend and other new features",
      text: "Remix any image, blend two ideas into one, and find them all in your library.",
      actions: ["Got it"],
      close: false,
    },
  };

  // Variants and one-off states of the page, injected by the stand-in (none: the default).
  const config = readConfig();
  const variant = config.variant || {};
  applyVariant(variant);

  const state = {
    // Like React state: follows `input` events only, never the textarea's raw value.
    prompt: "",
    aspect: ASPECTS[0],
    variants: 1,
    submitting: false,
    token: null,
    statuses: new Map(), // task id -> last status seen by this page
    announce: new Set(), // task ids whose end must be announced by a toast
    pollTimer: null,
    polling: false,
    pollingStopped: false, // scenario no_polling: lost track of tasks until a reload
  };

  const composer = document.getElementById("prompt");
  const isTextarea = composer instanceof HTMLTextAreaElement;
  const form = document.getElementById("composer");
  const createButton = document.getElementById("create-button");
  const settingsButton = document.getElementById("settings-button");
  const settingsSummary = document.getElementById("settings-summary");
  const grid = document.getElementById("grid");
  const emptyState = document.getElementById("empty-state");
  const toasts = document.getElementById("toasts");
  const accountName = document.getElementById("account-name");

  const variantsLabel = (n) => (n === 1 ? "1 image" : `${n} images`);

  // --- variants ---------------------------------------------------------------------------

  function readConfig() {
    const element = document.getElementById("standin-page");
    return element ? JSON.parse(element.textContent) : {};
  }

  // Reshape the default DOM into one of the shapes the real site has been seen in.
  function applyVariant(variant) {
    if (variant.composer === "contenteditable") {
      const textarea = document.getElementById("prompt");
      const editor = document.createElement("div");
      editor.id = "prompt";
      editor.className = "editor";
      editor.contentEditable = "true";
      editor.setAttribute("role", "textbox");
      editor.setAttribute("aria-label", "Prompt");
      editor.setAttribute("aria-multiline", "true");
      editor.dataset.placeholder = textarea.placeholder;
      textarea.replaceWith(editor);
    }
    const button = document.getElementById("create-button");
    if (variant.button === "generate") {
      button.textContent = "Generate";
      button.setAttribute("aria-label", "Generate");
    } else if (variant.button === "icon") {
      // Named only by visually hidden text, as on some builds of the real page.
      button.removeAttribute("aria-label");
      button.classList.add("icon-button");
      button.innerHTML =
        '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">' +
        '<path d="M12 19V5M5 12l7-7 7 7" fill="none" stroke="currentColor" stroke-width="2"' +
        ' stroke-linecap="round" stroke-linejoin="round"></path></svg>' +
        '<span class="sr-only">Create image</span>';
    } else if (variant.button === "none") {
      button.remove(); // Enter in the composer is the only way to submit
    }
    if (variant.settings === false) document.getElementById("settings-button").remove();
  }

  // A modal over the whole page: its overlay takes every click meant for the composer.
  // Each button (an action, or the × when `close`) dismisses it; with none it stays.
  function showDialog({ title, text, actions = [], close = false }) {
    const overlay = document.createElement("div");
    overlay.className = "overlay";
    overlay.dataset.state = "open";
    const dialog = document.createElement("div");
    dialog.setAttribute("role", "dialog");
    dialog.setAttribute("aria-modal", "true");
    dialog.dataset.state = "open";
    dialog.tabIndex = -1;
    const dismissButton = (label, className) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = className;
      button.textContent = label;
      button.addEventListener("click", () => overlay.remove());
      return button;
    };
    if (close) {
      const button = dismissButton("\u00d7", "dialog-close");
      button.setAttribute("aria-label", "Close");
      dialog.append(button);
    }
    const heading = document.createElement("h2");
    heading.id = `dialog-title-${document.querySelectorAll('[role="dialog"]').length}`;
    heading.textContent = title;
    dialog.setAttribute("aria-labelledby", heading.id);
    const paragraph = document.createElement("p");
    paragraph.textContent = text;
    dialog.append(heading, paragraph);
    if (actions.length > 0) {
      const row = document.createElement("div");
      row.className = "dialog-actions";
      row.append(...actions.map((label) => dismissButton(label, "dialog-action")));
      dialog.append(row);
    }
    overlay.append(dialog);
    document.body.append(overlay);
    // Like a Radix dialog, focus moves into it (so keys typed "into the composer" do not).
    (dialog.querySelector(".dialog-action") || dialog).focus();
  }

  // --- session and API --------------------------------------------------------------------

  class SignedOut extends Error {}

  async function accessToken(refresh) {
    if (state.token && !refresh) return state.token;
    const response = await fetch("/api/auth/session", { cache: "no-store" });
    const session = response.ok ? await response.json() : null;
    if (!session || !session.accessToken) {
      window.location.assign("/login?next=/");
      throw new SignedOut("signed out");
    }
    state.token = session.accessToken;
    accountName.textContent = session.user && session.user.name ? session.user.name : "";
    return state.token;
  }

  // The bearer token is short-lived: on a 401, fetch a fresh one once and retry.
  async function api(path, options = {}) {
    let response = null;
    for (const refresh of [false, true]) {
      const token = await accessToken(refresh);
      const headers = { ...(options.headers || {}), Authorization: `Bearer ${token}` };
      response = await fetch(path, { ...options, headers, cache: "no-store" });
      if (response.status !== 401) break;
    }
    return response;
  }

  // --- composer ---------------------------------------------------------------------------

  function syncCreateButton() {
    if (createButton) createButton.disabled = state.submitting || state.prompt.trim() === "";
  }

  function clearComposer() {
    if (isTextarea) composer.value = "";
    else composer.textContent = "";
    state.prompt = "";
  }

  composer.addEventListener("input", () => {
    state.prompt = isTextarea ? composer.value : composer.textContent;
    syncCreateButton();
  });

  composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  async function submit() {
    const prompt = state.prompt.trim();
    if (prompt === "" || state.submitting) return;
    state.submitting = true;
    syncCreateButton();
    const body = {
      type: "image_gen",
      operation: "simple_compose",
      prompt,
      n_variants: state.variants,
      width: state.aspect.width,
      height: state.aspect.height,
      n_frames: 1,
      inpaint_items: [],
    };
    try {
      await accessToken(true); // the real page re-reads the session before creating
      const response = await api("/backend/video_gen", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok || !answer || !answer.id) {
        const message = answer && answer.error ? answer.error.message : `HTTP ${response.status}`;
        toast(`Unable to create: ${message}`, "error");
        return;
      }
      clearComposer();
      if (response.headers.get("X-Standin-No-Polling")) {
        // Scenario no_polling: the page loses track of its tasks, as if its updates broke.
        state.pollingStopped = true;
        clearTimeout(state.pollTimer);
        return;
      }
      state.announce.add(answer.id);
      // Show the new tile at once, as the real page does, before the next list arrives.
      renderTasks([{ ...body, id: answer.id, status: "queued", progress_pct: 0, generations: [] }]);
      schedulePoll(0);
    } catch (error) {
      if (!(error instanceof SignedOut)) toast(`Unable to create: ${error.message}`, "error");
    } finally {
      state.submitting = false;
      syncCreateButton();
    }
  }

  // --- settings menu (shaped like a Radix dropdown: exists in the DOM only while open) ----

  let menu = null;

  function menuItem(label, checked, onSelect, data) {
    const item = document.createElement("div");
    item.setAttribute("role", "menuitemradio");
    item.setAttribute("aria-checked", String(checked));
    item.dataset.state = checked ? "checked" : "unchecked";
    Object.assign(item.dataset, data);
    item.tabIndex = -1;
    item.textContent = label;
    item.addEventListener("click", () => {
      onSelect();
      closeMenu();
    });
    return item;
  }

  function menuGroup(title, items) {
    const group = document.createElement("div");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", title);
    const label = document.createElement("div");
    label.className = "menu-label";
    label.textContent = title;
    group.append(label, ...items);
    return group;
  }

  function openMenu() {
    menu = document.createElement("div");
    menu.id = "settings-menu";
    menu.setAttribute("role", "menu");
    menu.setAttribute("aria-label", "Settings");
    menu.dataset.state = "open";
    menu.append(
      menuGroup(
        "Aspect ratio",
        ASPECTS.map((aspect) =>
          menuItem(aspect.label, aspect === state.aspect, () => (state.aspect = aspect), {
            aspect: aspect.label,
          }),
        ),
      ),
      menuGroup(
        "Variations",
        VARIANTS.map((n) =>
          menuItem(variantsLabel(n), n === state.variants, () => (state.variants = n), {
            variants: String(n),
          }),
        ),
      ),
    );
    menu.addEventListener("keydown", onMenuKey);
    document.body.append(menu);
    const rect = settingsButton.getBoundingClientRect();
    menu.style.left = `${rect.left}px`;
    menu.style.bottom = `${window.innerHeight - rect.top + 8}px`;
    settingsButton.setAttribute("aria-expanded", "true");
    settingsButton.dataset.state = "open";
    const checked = menu.querySelector('[aria-checked="true"]');
    if (checked) checked.focus();
  }

  function closeMenu() {
    if (!menu) return;
    menu.remove();
    menu = null;
    settingsButton.setAttribute("aria-expanded", "false");
    settingsButton.dataset.state = "closed";
    settingsSummary.textContent = `${state.aspect.label} · ${variantsLabel(state.variants)}`;
    settingsButton.focus();
  }

  function onMenuKey(event) {
    const items = [...menu.querySelectorAll('[role="menuitemradio"]')];
    const at = items.indexOf(document.activeElement);
    if (event.key === "Escape") {
      closeMenu();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : items.length - 1;
      items[(at + step) % items.length].focus();
    } else if ((event.key === "Enter" || event.key === " ") && at >= 0) {
      items[at].click();
    } else {
      return;
    }
    event.preventDefault();
  }

  if (settingsButton) {
    settingsButton.addEventListener("click", () => (menu ? closeMenu() : openMenu()));
  }

  document.addEventListener("pointerdown", (event) => {
    if (menu && !menu.contains(event.target) && !settingsButton.contains(event.target)) {
      closeMenu();
    }
  });

  // --- library grid -----------------------------------------------------------------------

  function progressRing(pct) {
    const ring = document.createElement("div");
    ring.className = "progress";
    ring.setAttribute("role", "progressbar");
    ring.setAttribute("aria-valuemin", "0");
    ring.setAttribute("aria-valuemax", "100");
    ring.innerHTML =
      '<svg viewBox="0 0 64 64" width="64" height="64" aria-hidden="true">' +
      '<circle class="track" cx="32" cy="32" r="28"></circle>' +
      `<circle class="bar" cx="32" cy="32" r="28" stroke-dasharray="${RING}"></circle></svg>` +
      '<span class="progress-label"></span>';
    updateRing(ring, pct);
    return ring;
  }

  function updateRing(ring, pct) {
    const percent = Math.round(Math.min(Math.max(pct || 0, 0), 1) * 100);
    ring.setAttribute("aria-valuenow", String(percent));
    ring.querySelector(".bar").setAttribute("stroke-dashoffset", String(RING * (1 - percent / 100)));
    ring.querySelector(".progress-label").textContent = `${percent}%`;
  }

  function fillTile(tile, task) {
    const media = document.createElement("div");
    media.className = "tile-media";
    const generations = task.generations || [];
    if (task.status === "succeeded" && generations.length > 0) {
      if (generations.length > 1) media.classList.add("variants");
      for (const generation of generations) {
        const img = document.createElement("img");
        // The grid shows thumbnails only, as on the real site; the full-size file is `url`.
        img.src = generation.encodings.thumbnail.path;
        img.alt = task.prompt;
        img.dataset.generationId = generation.id;
        media.append(img);
      }
    } else if (["succeeded", "failed", "cancelled"].includes(task.status)) {
      // A succeeded task without images had them all withheld by moderation.
      const error = document.createElement("p");
      error.className = "tile-error";
      if (task.status === "cancelled") error.textContent = "Cancelled";
      else if (task.failure_reason) error.textContent = task.failure_reason;
      else error.textContent = task.num_unsafe_generations ? CONTENT_POLICY : "Generation failed";
      media.append(error);
    } else {
      const preview = document.createElement("div");
      preview.className = "preview";
      media.append(preview);
      if (task.status === "queued") {
        const label = document.createElement("p");
        label.className = "queue-label";
        label.textContent = "In queue";
        media.append(label);
      } else {
        media.append(progressRing(task.progress_pct));
      }
    }
    const caption = document.createElement("p");
    caption.className = "tile-prompt";
    caption.textContent = task.prompt;
    caption.title = task.prompt;
    tile.replaceChildren(media, caption);
  }

  function upsertTile(task) {
    let tile = grid.querySelector(`[data-task-id="${CSS.escape(task.id)}"]`);
    if (!tile) {
      tile = document.createElement("article");
      tile.className = "tile";
      tile.dataset.taskId = task.id;
    }
    if (tile.dataset.status !== task.status) {
      tile.dataset.status = task.status;
      fillTile(tile, task);
    } else if (task.status === "running") {
      const ring = tile.querySelector(".progress");
      if (ring) updateRing(ring, task.progress_pct);
    }
    return tile;
  }

  // `tasks` is newest first; tiles no longer listed (older than the page) stay in place.
  function renderTasks(tasks) {
    let anchor = grid.firstElementChild;
    for (const task of tasks) {
      const tile = upsertTile(task);
      if (tile !== anchor) grid.insertBefore(tile, anchor);
      anchor = tile.nextElementSibling;
      noticeStatus(task);
    }
    emptyState.hidden = grid.childElementCount > 0;
  }

  function noticeStatus(task) {
    const before = state.statuses.get(task.id);
    state.statuses.set(task.id, task.status);
    if (ACTIVE.has(task.status)) {
      state.announce.add(task.id);
    } else if (state.announce.has(task.id) && before !== task.status) {
      state.announce.delete(task.id);
      if (task.status === "succeeded") toast("Your image is ready", "success");
      else if (task.status === "failed") toast("Generation failed", "error");
    }
  }

  // --- polling ----------------------------------------------------------------------------

  function schedulePoll(delay) {
    if (state.pollingStopped) return;
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(poll, delay);
  }

  async function poll() {
    state.pollTimer = null;
    if (state.polling) return schedulePoll(POLL_MS);
    state.polling = true;
    let again = false;
    try {
      const response = await api("/backend/v2/list_tasks?limit=20");
      if (response.ok) {
        const data = await response.json();
        if (state.pollingStopped) return; // an answer that arrived after polling stopped
        renderTasks(data.task_responses || []);
        again = (data.task_responses || []).some((task) => ACTIVE.has(task.status));
      } else {
        again = true; // a passing error (e.g. 503): try again later
      }
    } catch (error) {
      if (error instanceof SignedOut) return;
      again = true;
    } finally {
      state.polling = false;
    }
    // Keep polling while something is in progress or a submitted task is not listed yet.
    if (again || state.announce.size > 0) schedulePoll(POLL_MS);
  }

  // --- toasts -----------------------------------------------------------------------------

  function toast(message, kind) {
    const item = document.createElement("div");
    item.className = "toast";
    item.setAttribute("role", "status");
    item.setAttribute("aria-live", "polite");
    item.dataset.kind = kind;
    item.textContent = message;
    toasts.append(item);
    setTimeout(() => item.remove(), TOAST_MS);
  }

  if (variant.popup) showDialog(POPUPS[variant.popup === true ? "app" : variant.popup]);
  if (config.phone_verification) {
    // No button: no way out but verifying (here: a reload once the scenario is spent).
    showDialog({
      title: "Verify your phone number to continue.",
      text: "To keep Sora safe, we need to confirm your phone number before you can create.",
    });
  }

  syncCreateButton();
  schedulePoll(0);
})();
