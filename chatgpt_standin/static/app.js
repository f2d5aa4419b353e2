// The stand-in ChatGPT page. Plain JS, but it behaves like the real page where that matters
// to automation: the page builds itself, the composer is a contenteditable whose state follows
// input events only, sends go through the page's own token and sentinel, answers stream in,
// and images arrive later on the conversation (polled), a blurred preview first.
"use strict";

(() => {
  const POLL_MS = 700;
  const SETTLE_MS = 6000; // keep polling this long after the last image settled (withdrawals)
  const ROOT_ID = "client-created-root";
  const GEN_FAILED = "Image generation failed";
  const PLACEHOLDER = "Ask anything";
  const SOMETHING_WRONG =
    "Something went wrong. If this issue persists please contact us through our help center " +
    "at help.openai.com.";
  const TOOLS = [
    { label: "Create image", hint: "picture_v2", pill: "Image" },
    { label: "Think longer", hint: "reason", pill: "Think" },
    { label: "Deep research", hint: "research", pill: "Research" },
    { label: "Web search", hint: "search", pill: "Search" },
  ];

  const config = readConfig();
  const variant = config.variant || {};
  const workspace = config.workspace || "chat";
  const root = document.getElementById("root");

  const state = {
    token: null,
    user: null,
    conversationId: conversationIdFromPath(),
    currentNode: ROOT_ID,
    messages: new Map(), // id -> message, as the server (or the stream) gave it
    order: [], // message ids of the shown branch, root first
    text: "", // the composer's text as its input events told it (never read from the DOM)
    tool: null, // the tool chosen in the "+" menu
    streaming: false,
    making: false, // an image of the conversation is being made
    abort: null,
    pollTimer: null,
    settleUntil: 0,
    fileUrls: new Map(), // file id -> Promise of its download URL
  };
  const ui = {};

  function readConfig() {
    const element = document.getElementById("standin-page");
    return element ? JSON.parse(element.textContent) : {};
  }

  function conversationIdFromPath() {
    const match = /^\/c\/([0-9a-f-]{36})$/.exec(window.location.pathname);
    return match ? match[1] : null;
  }

  function el(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") element.textContent = value;
      else if (name === "onclick") element.addEventListener("click", value);
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    element.append(...children);
    return element;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (Math.random() * 16) >> (c / 4)).toString(16),
    );
  }

  // --- session and API --------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : (detail && detail.message) || SOMETHING_WRONG);
      this.status = status;
      this.detail = detail;
    }
  }

  async function fetchSession() {
    const response = await fetch("/api/auth/session", { cache: "no-store" });
    if (!response.ok) throw new HttpError(response.status, SOMETHING_WRONG);
    const session = await response.json();
    return session && session.accessToken ? session : null;
  }

  async function httpError(response) {
    const body = await response.json().catch(() => null);
    return new HttpError(response.status, body && body.detail ? body.detail : SOMETHING_WRONG);
  }

  // The bearer token is short-lived: on a 401, read the session again once and retry.
  async function api(path, options = {}) {
    let response = null;
    for (const refresh of [false, true]) {
      if (refresh || !state.token) {
        const session = await fetchSession();
        if (!session) {
          renderLoggedOut();
          throw new HttpError(401, "signed out");
        }
        state.token = session.accessToken;
      }
      const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.token}` };
      response = await fetch(path, { ...options, headers, cache: "no-store" });
      if (response.status !== 401) break;
    }
    return response;
  }

  async function apiJson(path, options) {
    const response = await api(path, options);
    if (!response.ok) throw await httpError(response);
    return response.json();
  }

  // --- logged out -------------------------------------------------------------------------

  function renderLoggedOut() {
    const next = encodeURIComponent(window.location.pathname);
    const login = () => window.location.assign(`/auth/login?next=${next}`);
    root.replaceChildren(
      el(
        "div",
        { class: "logged-out" },
        el(
          "header",
          {},
          el("span", { class: "model-name", text: "ChatGPT" }),
          el(
            "div",
            { class: "actions" },
            el("button", { type: "button", "data-testid": "login-button", text: "Log in", onclick: login }),
            el("button", { type: "button", "data-testid": "signup-button", text: "Sign up for free", onclick: login }),
          ),
        ),
        el("div", { class: "welcome", text: "What can I help with?" }),
      ),
    );
  }

  // --- the page ---------------------------------------------------------------------------

  function renderApp() {
    ui.history = el("ol", { "aria-label": "Chats" });
    const sidebar = el(
      "nav",
      { class: "sidebar", "aria-label": "Chat history" },
      el("a", { href: "/", "data-testid": "create-new-chat-button", text: "New chat" }),
      el("a", { href: "/images/", "data-testid": "sidebar-item-library", text: "Images" }),
      el("h2", { text: "Chats" }),
      ui.history,
      el("div", { class: "account", "data-testid": "accounts-profile-button", text: state.user.name }),
    );
    // Outside the composer: a read-aloud player whose "Stop" traps unscoped selectors.
    const voice = el(
      "div",
      { class: "voice-bar" },
      el("span", { text: "Read aloud" }),
      el("button", { type: "button", "aria-label": "Stop", "data-testid": "voice-stop-button", text: "■" }),
    );
    const header = el("header", { class: "page-header" }, el("span", { class: "model-name", text: "ChatGPT" }), voice);
    ui.thread = el("div", { class: "thread", role: "presentation" });
    ui.alerts = el("div", { class: "alerts" });
    const main = el("main", {}, header);
    if (workspace === "images") {
      ui.library = el("div", { class: "library-grid", "data-testid": "images-library" });
      main.append(el("section", { class: "library", "aria-label": "Library" }, el("h1", { text: "Images" }), ui.library));
    }
    main.append(ui.thread, ui.alerts, buildComposer());
    root.replaceChildren(el("div", { class: "app" }, sidebar, main));
  }

  // --- composer ---------------------------------------------------------------------------

  function emptyParagraph() {
    return el("p", { "data-placeholder": PLACEHOLDER, class: "placeholder" }, el("br", { class: "ProseMirror-trailingBreak" }));
  }

  function buildEditor() {
    if (variant.composer === "textarea") {
      const textarea = el("textarea", { name: "prompt-textarea", class: "plain-textarea", placeholder: PLACEHOLDER, rows: 1, tabindex: 0 });
      return { element: textarea, read: () => textarea.value, clear: () => (textarea.value = "") };
    }
    const attributes =
      variant.composer === "renamed"
        ? { contenteditable: "true", "data-testid": "chat-composer-input", class: "composer-input" }
        : {
            contenteditable: "true",
            translate: "no",
            class: "ProseMirror",
            id: "prompt-textarea",
            role: "textbox",
            "aria-multiline": "true",
            "data-virtualkeyboard": "true",
          };
    const editor = el("div", attributes, emptyParagraph());
    return {
      element: editor,
      read: () => editor.innerText.replace(/\n$/, ""),
      clear: () => editor.replaceChildren(emptyParagraph()),
    };
  }

  function buildComposer() {
    ui.editor = buildEditor();
    const input = ui.editor.element;
    input.addEventListener("input", () => {
      state.text = ui.editor.read();
      const first = input.querySelector("p");
      if (first) first.classList.toggle("placeholder", state.text === "");
      syncSendButton();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      event.preventDefault();
      if (event.shiftKey) document.execCommand("insertLineBreak");
      else submit();
    });
    input.addEventListener("paste", (event) => {
      if (input instanceof HTMLTextAreaElement) return;
      event.preventDefault(); // plain text only, as the real editor keeps it
      document.execCommand("insertText", false, event.clipboardData.getData("text/plain"));
    });
    ui.pills = el("div", { class: "pills" });
    ui.trailing = el("div", { class: "trailing" });
    const row = el("div", { class: "composer-row" });
    if (variant.plus_menu !== false) {
      ui.plus = el("button", {
        type: "button",
        class: "plus-btn",
        "data-testid": "composer-plus-btn",
        "aria-label": "Add files and more",
        "aria-haspopup": "menu",
        "aria-expanded": "false",
        "data-state": "closed",
        text: "+",
        onclick: () => (ui.menu ? closeMenu() : openMenu()),
      });
      row.append(ui.plus);
    }
    // Hidden, as on the real page: the fallback the editor is mounted over.
    const fallback =
      variant.composer === "textarea" || variant.composer === "renamed"
        ? []
        : [el("textarea", { name: "prompt-textarea", class: "fallback", style: "display: none", tabindex: -1, "aria-hidden": "true" })];
    row.append(ui.pills, el("div", { class: "editor-wrap" }, ...fallback, input), ui.trailing);
    const form = el("form", { class: "composer", "data-type": "unified-composer", autocomplete: "off" }, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    syncSendButton();
    return form;
  }

  function syncSendButton() {
    let button;
    if (state.streaming) {
      button = el("button", {
        type: "button",
        class: "composer-btn",
        "data-testid": "stop-button",
        "aria-label": "Stop streaming",
        text: "■",
        onclick: () => state.abort && state.abort.abort(),
      });
    } else {
      const names =
        variant.send === "2026"
          ? { "data-testid": "composer-submit-button", "aria-label": "Send message" }
          : { id: "composer-submit-button", "data-testid": "send-button", "aria-label": "Send prompt" };
      button = el("button", { type: "submit", class: "composer-btn", ...names, text: "↑" });
      button.disabled = state.text.trim() === "";
    }
    const old = ui.trailing.firstElementChild;
    if (old && old.dataset.testid === button.dataset.testid && !state.streaming) {
      old.disabled = button.disabled; // keep the element: Playwright handles stay valid
    } else {
      ui.trailing.replaceChildren(button);
    }
  }

  // --- the "+" menu (shaped like a Radix dropdown: in the DOM only while open) -------------

  function openMenu() {
    const items = [el("div", { role: "menuitem", tabindex: -1, text: "Add photos & files" })];
    for (const tool of TOOLS) {
      const checked = state.tool === tool;
      const item = el("div", {
        role: "menuitemradio",
        "aria-checked": String(checked),
        "data-state": checked ? "checked" : "unchecked",
        tabindex: -1,
        text: tool.label,
      });
      item.addEventListener("click", () => {
        chooseTool(tool);
        closeMenu();
      });
      items.push(item);
    }
    ui.menu = el("div", { role: "menu", "data-state": "open", "aria-orientation": "vertical", "data-radix-menu-content": true }, ...items);
    ui.menu.addEventListener("keydown", onMenuKey);
    document.body.append(ui.menu);
    const rect = ui.plus.getBoundingClientRect();
    ui.menu.style.left = `${rect.left}px`;
    ui.menu.style.bottom = `${window.innerHeight - rect.top + 8}px`;
    ui.plus.setAttribute("aria-expanded", "true");
    ui.plus.dataset.state = "open";
    items[0].focus();
  }

  function closeMenu() {
    if (!ui.menu) return;
    ui.menu.remove();
    ui.menu = null;
    ui.plus.setAttribute("aria-expanded", "false");
    ui.plus.dataset.state = "closed";
  }

  function onMenuKey(event) {
    const items = [...ui.menu.querySelectorAll('[role^="menuitem"]')];
    const at = items.indexOf(document.activeElement);
    if (event.key === "Escape") closeMenu();
    else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : items.length - 1;
      items[(at + step) % items.length].focus();
    } else if ((event.key === "Enter" || event.key === " ") && at >= 0) items[at].click();
    else return;
    event.preventDefault();
  }

  document.addEventListener("pointerdown", (event) => {
    if (ui.menu && !ui.menu.contains(event.target) && !ui.plus.contains(event.target)) closeMenu();
  });

  function chooseTool(tool) {
    state.tool = tool;
    ui.pills.replaceChildren();
    if (tool) {
      const remove = el("button", {
        type: "button",
        "aria-label": `Remove ${tool.pill}`,
        text: "×",
        onclick: () => chooseTool(null),
      });
      const pill = el("div", { class: "composer-pill", "data-system-hint-type": tool.hint }, el("span", { text: tool.pill }), remove);
      ui.pills.append(pill);
    }
    ui.editor.element.focus();
  }

  // --- sending ----------------------------------------------------------------------------

  async function submit(again) {
    const text = (again || state.text).trim();
    if (text === "" || state.streaming) return;
    const hints = state.tool ? [state.tool.hint] : [];
    const message = {
      id: uuid(),
      author: { role: "user" },
      create_time: Date.now() / 1000,
      content: { content_type: "text", parts: [text] },
      metadata: hints.length ? { system_hints: hints } : {},
      status: "finished_successfully",
    };
    if (!again) {
      ui.editor.clear();
      state.text = "";
    }
    state.streaming = true;
    syncSendButton();
    ui.alerts.replaceChildren();
    addMessage(message);
    state.abort = new AbortController();
    try {
      const requirements = await apiJson("/backend-api/sentinel/chat-requirements", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
      });
      const body = {
        action: "next",
        messages: [message],
        parent_message_id: state.currentNode,
        model: "auto",
        timezone_offset_min: new Date().getTimezoneOffset(),
        system_hints: hints,
        conversation_mode: { kind: "primary_assistant" },
        supports_buffering: true,
      };
      if (state.conversationId) body.conversation_id = state.conversationId;
      const response = await api("/backend-api/f/conversation", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "text/event-stream",
          "OpenAI-Sentinel-Chat-Requirements-Token": requirements.token,
        },
        body: JSON.stringify(body),
        signal: state.abort.signal,
      });
      if (!response.ok) throw await httpError(response);
      await readStream(response);
    } catch (error) {
      if (error.name !== "AbortError" && error.message !== "signed out") showAlert(error);
    } finally {
      state.streaming = false;
      state.abort = null;
      syncSendButton();
      render();
    }
    if (state.conversationId) {
      await refresh();
      loadHistory();
    }
  }

  function addMessage(message) {
    state.messages.set(message.id, message);
    if (!state.order.includes(message.id)) state.order.push(message.id);
    state.currentNode = message.id;
    render();
  }

  async function readStream(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let current = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data: "))
          .map((line) => line.slice(6))
          .join("\n");
        if (data === "") continue;
        if (data === "[DONE]") return;
        current = onEvent(JSON.parse(data), current);
      }
    }
  }

  // One event of the stream; `current` is the message the patches apply to.
  function onEvent(event, current) {
    if (typeof event !== "object" || event === null) return current; // "v1"
    if (event.conversation_id) followConversation(event.conversation_id);
    if (event.v && event.v.conversation_id) followConversation(event.v.conversation_id);
    if (event.type === "title_generation") document.title = event.title;
    if (event.p === "" && event.o === "add") {
      current = event.v.message;
      addMessage(current);
    } else if (current && event.o === "append") {
      applyPatch(current, event);
    } else if (current && event.o === "patch") {
      for (const patch of event.v) applyPatch(current, patch);
    }
    render();
    return current;
  }

  function applyPatch(message, patch) {
    const path = patch.p.replace(/^\/message\//, "").split("/");
    let target = message;
    for (const key of path.slice(0, -1)) target = target[key];
    const last = path[path.length - 1];
    target[last] = patch.o === "append" ? (target[last] || "") + patch.v : patch.v;
  }

  function followConversation(id) {
    if (state.conversationId === id) return;
    state.conversationId = id;
    if (window.location.pathname !== `/c/${id}`) history.pushState({}, "", `/c/${id}`);
  }

  function showAlert(error) {
    let text = SOMETHING_WRONG;
    if (error.status === 429) text = "Too many requests. Try again later.";
    else if (error.status && typeof error.detail === "string") text = error.detail;
    else if (error.detail && error.detail.message) text = error.detail.message;
    ui.alerts.replaceChildren(el("div", { role: "alert", class: "alert", "data-testid": "error-alert", text }));
  }

  // --- following the conversation ---------------------------------------------------------

  async function refresh() {
    let conversation;
    try {
      conversation = await apiJson(`/backend-api/conversation/${state.conversationId}`);
    } catch (error) {
      if (error.message !== "signed out") showAlert(error);
      return schedulePoll(); // a passing error: try again later
    }
    state.messages = new Map();
    state.order = [];
    for (let id = conversation.current_node; id && conversation.mapping[id]; ) {
      const node = conversation.mapping[id];
      if (node.message) {
        state.messages.set(id, node.message);
        state.order.unshift(id);
      }
      id = node.parent;
    }
    state.currentNode = conversation.current_node;
    document.title = conversation.title || "ChatGPT";
    render();
    schedulePoll();
  }

  // Poll while an image is being made, and a little longer (an image can be withdrawn).
  function schedulePoll() {
    clearTimeout(state.pollTimer);
    const making = [...state.messages.values()].some((m) => isImageTool(m) && m.status === "in_progress");
    if (making) state.settleUntil = Date.now() + SETTLE_MS;
    if (making || Date.now() < state.settleUntil) {
      state.pollTimer = setTimeout(() => state.streaming || refresh(), POLL_MS);
    }
    if (state.making && !making && workspace === "images") loadLibrary();
    state.making = making;
  }

  function isImageTool(message) {
    return message.author.role === "tool" && (message.metadata || {}).async_task_type === "image_gen";
  }

  // --- rendering --------------------------------------------------------------------------

  function turns() {
    const groups = [];
    for (const id of state.order) {
      const message = state.messages.get(id);
      if (!message) continue;
      const last = groups[groups.length - 1];
      if (message.author.role === "user") groups.push({ key: id, role: "user", messages: [message] });
      else if (!last || last.role === "user") groups.push({ key: `a-${id}`, role: "assistant", messages: [message] });
      else last.messages.push(message);
    }
    return groups;
  }

  function render() {
    if (!ui.thread) return;
    const groups = turns();
    const keep = new Set(groups.map((group) => group.key));
    for (const article of [...ui.thread.children]) {
      if (!keep.has(article.dataset.turnKey)) article.remove();
    }
    groups.forEach((group, index) => {
      let article = ui.thread.querySelector(`article[data-turn-key="${group.key}"]`);
      if (!article) article = el("article", { "data-turn-key": group.key, "data-turn": group.role });
      article.dataset.testid = `conversation-turn-${index + 1}`;
      if (ui.thread.children[index] !== article) ui.thread.insertBefore(article, ui.thread.children[index] || null);
      const last = index === groups.length - 1;
      if (group.role === "user") renderUser(article, group.messages[0]);
      else renderAssistant(article, group.messages, last && state.streaming);
    });
  }

  function renderUser(article, message) {
    let bubble = article.querySelector(".user-bubble");
    if (!bubble) {
      bubble = el("div", { class: "user-bubble" });
      article.append(el("div", { "data-message-author-role": "user", "data-message-id": message.id }, bubble));
    }
    bubble.textContent = message.content.parts[0];
  }

  function renderAssistant(article, messages, streaming) {
    const shown = messages.filter((m) => m.recipient === undefined || m.recipient === "all");
    const keep = new Set(shown.map((m) => m.id));
    for (const child of [...article.querySelectorAll(":scope > [data-message-id]")]) {
      if (!keep.has(child.dataset.messageId)) child.remove();
    }
    let anchor = null;
    for (const message of shown) {
      let block = article.querySelector(`:scope > [data-message-id="${message.id}"]`);
      if (!block) {
        // The image tool's output shows as part of the assistant's answer, as on the real page.
        const tool = isImageTool(message) ? "image_gen" : null;
        block = el("div", { "data-message-author-role": "assistant", "data-message-id": message.id, "data-tool": tool });
        article.insertBefore(block, anchor ? anchor.nextSibling : article.firstChild);
      }
      if (isImageTool(message)) renderImage(block, message);
      else renderText(block, message);
      anchor = block;
    }
    const done = !streaming && !messages.some((m) => m.status === "in_progress");
    let actions = article.querySelector(":scope > .turn-actions");
    if (done && !actions) article.append(turnActions(messages));
    else if (!done && actions) actions.remove();
  }

  function renderText(block, message) {
    const text = message.content.parts ? message.content.parts.join("") : "";
    let body = block.querySelector(".markdown");
    if (!body) {
      body = el("div", { class: "markdown prose" });
      block.append(body);
    }
    if (body.textContent !== text) body.textContent = text;
    if (text === GEN_FAILED && !block.querySelector(".retry")) {
      block.append(el("button", { type: "button", class: "retry", text: "Try again", onclick: () => submit(lastUserText()) }));
    }
  }

  function lastUserText() {
    const users = state.order.map((id) => state.messages.get(id)).filter((m) => m && m.author.role === "user");
    return users.length ? users[users.length - 1].content.parts[0] : "";
  }

  function imageStage(message) {
    const parts = (message.content && message.content.parts) || [];
    if ((message.metadata || {}).is_redacted) return "removed";
    if (message.status === "finished_with_error") return "failed";
    if (message.status === "in_progress") return parts.length ? "preview" : "creating";
    return parts.length ? "done" : "removed";
  }

  function renderImage(block, message) {
    const stage = imageStage(message);
    const parts = stage === "preview" || stage === "done" ? message.content.parts : [];
    block.dataset.state = stage;
    let box = block.querySelector(".image-gen");
    if (!box) {
      box = el("div", { class: "image-gen" }, el("div", { class: "image-gen-status" }), el("div", { class: "image-grid" }));
      block.append(box);
    }
    box.dataset.state = stage;
    const status = { creating: "Creating image", preview: "Creating image", done: "Image created" };
    box.querySelector(".image-gen-status").textContent = status[stage] || "";
    const grid = box.querySelector(".image-grid");
    if (stage === "creating") {
      if (!grid.querySelector(".image-placeholder")) grid.replaceChildren(el("div", { class: "image-placeholder" }));
      return;
    }
    if (parts.length === 0) return grid.replaceChildren();
    grid.querySelector(".image-placeholder")?.remove();
    const title = (message.metadata || {}).image_gen_title || "";
    parts.forEach((part, index) => {
      let frame = grid.children[index];
      if (!frame) {
        frame = el("div", { class: "image-frame" }, el("img", { alt: `Generated image: ${title}` }));
        grid.append(frame);
      }
      showFile(frame, part, stage === "preview");
    });
    while (grid.children.length > parts.length) grid.lastElementChild.remove();
  }

  // The same img shows the preview, then the final file swapped in.
  function showFile(frame, part, preview) {
    const img = frame.querySelector("img");
    const fileId = part.asset_pointer.replace("sediment://", "");
    img.classList.toggle("blurred", preview);
    if (!preview && !frame.querySelector(".image-actions")) frame.append(imageActions(img));
    if (img.dataset.fileId === fileId) return;
    img.dataset.fileId = fileId;
    downloadUrl(fileId).then(
      (url) => {
        if (img.dataset.fileId === fileId) img.src = preview ? `${url}#thumbnail` : url;
      },
      () => state.fileUrls.delete(fileId),
    );
  }

  function downloadUrl(fileId) {
    if (!state.fileUrls.has(fileId)) {
      const query = `conversation_id=${encodeURIComponent(state.conversationId)}`;
      const url = apiJson(`/backend-api/files/download/${fileId}?${query}`).then((answer) => answer.download_url);
      state.fileUrls.set(fileId, url);
    }
    return state.fileUrls.get(fileId);
  }

  function imageActions(img) {
    const download = async () => {
      const link = el("a", { href: img.src, download: "image.png" });
      document.body.append(link);
      link.click();
      link.remove();
    };
    // Labelled in early 2026, an unlabelled icon later.
    const label = variant.send === "2026" ? {} : { "aria-label": "Download this image" };
    return el(
      "div",
      { class: "image-actions" },
      el("button", { type: "button", "aria-label": "Edit image", text: "Edit" }),
      el("button", { type: "button", "aria-label": "Share this image", text: "Share" }),
      el("button", { type: "button", ...label, text: "⤓", onclick: download }),
    );
  }

  function turnActions(messages) {
    const text = messages
      .filter((m) => m.content && m.content.content_type === "text")
      .map((m) => m.content.parts.join(""))
      .join("\n");
    const copy = () => navigator.clipboard && navigator.clipboard.writeText(text).catch(() => {});
    const button = (testid, label, onclick) => el("button", { type: "button", "data-testid": testid, "aria-label": label, text: label, onclick });
    const actions = el(
      "div",
      { class: "turn-actions" },
      button("copy-turn-action-button", "Copy", copy),
      button("good-response-turn-action-button", "Good response"),
      button("bad-response-turn-action-button", "Bad response"),
      button("voice-play-turn-action-button", "Read aloud"),
    );
    if (workspace === "images" && messages.some((m) => isImageTool(m) && imageStage(m) === "done")) {
      actions.append(button("good-image-turn-action-button", "Good image"));
    }
    return actions;
  }

  // --- side panels ------------------------------------------------------------------------

  async function loadHistory() {
    const listing = await apiJson("/backend-api/conversations?offset=0&limit=28").catch(() => null);
    if (!listing) return;
    ui.history.replaceChildren(
      ...listing.items.map((item, index) =>
        el("li", {}, el("a", { href: `/c/${item.id}`, "data-testid": `history-item-${index}`, text: item.title || "New chat" })),
      ),
    );
  }

  async function loadLibrary() {
    const recent = await apiJson("/backend-api/my/recent/image_gen?limit=25").catch(() => null);
    if (!recent || !ui.library) return;
    ui.library.replaceChildren(...recent.items.map((item) => el("img", { src: item.url, alt: item.title, loading: "lazy" })));
  }

  // --- start ------------------------------------------------------------------------------

  async function start() {
    let session;
    try {
      session = await fetchSession();
    } catch (error) {
      root.replaceChildren(el("div", { role: "alert", class: "alert", text: SOMETHING_WRONG }));
      return;
    }
    if (!session) return renderLoggedOut();
    state.token = session.accessToken;
    state.user = session.user;
    renderApp();
    loadHistory();
    if (workspace === "images") loadLibrary();
    if (state.conversationId) await refresh();
  }

  start();
})();
