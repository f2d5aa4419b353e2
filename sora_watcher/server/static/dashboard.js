// The dashboard's live parts; the page works without this script, only not live.
//
// - #live (queue, state, banner, failed jobs, gallery) is fetched from its data-src every
//   two seconds and swapped in when it changed; a hidden tab does not poll.
// - A click on a thumbnail opens the full image and its sidecar in a dialog; a click with a
//   modifier key opens the image as a link does.
(() => {
  "use strict";
  const EVERY_MS = 2000;

  function keepFresh(live) {
    let shown = null; // the last fragment swapped in, as the server wrote it
    async function refresh() {
      if (!document.hidden) {
        try {
          const answer = await fetch(live.dataset.src, {
            credentials: "same-origin",
            cache: "no-store",
            headers: { Accept: "text/html" },
          });
          if (answer.status === 401) {
            window.location.assign("/login"); // the token changed: log in again
            return;
          }
          if (answer.ok) {
            const html = await answer.text();
            if (html !== shown) {
              live.innerHTML = html;
              shown = html;
            }
          }
          live.classList.toggle("stale", !answer.ok);
        } catch (error) {
          live.classList.add("stale"); // the daemon restarting: the next round tries again
        }
      }
      window.setTimeout(refresh, EVERY_MS);
    }
    window.setTimeout(refresh, EVERY_MS);
  }

  async function showSidecar(url, into) {
    into.textContent = "";
    try {
      const answer = await fetch(url, { credentials: "same-origin" });
      into.textContent = answer.ok
        ? JSON.stringify(await answer.json(), null, 2)
        : `no sidecar (HTTP ${answer.status})`;
    } catch (error) {
      into.textContent = "the sidecar could not be read";
    }
  }

  function openViewer(viewer, link) {
    const image = viewer.querySelector("#viewer-image");
    image.src = link.href;
    image.alt = link.dataset.prompt || "";
    viewer.querySelector("#viewer-prompt").textContent = link.dataset.prompt || "";
    viewer.querySelector("#viewer-full").href = link.href;
    viewer.querySelector("#viewer-sidecar-link").href = link.dataset.sidecar;
    showSidecar(link.dataset.sidecar, viewer.querySelector("#viewer-sidecar"));
    viewer.showModal();
  }

  function followClicks(viewer) {
    document.addEventListener("click", (event) => {
      const link = event.target.closest("a.shot");
      if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
        return;
      }
      event.preventDefault();
      openViewer(viewer, link);
    });
    viewer.addEventListener("click", (event) => {
      if (event.target === viewer) viewer.close(); // a click on the backdrop
    });
  }

  function forgetFlash() {
    // The message of a form's redirect is shown once, not again on a reload.
    if (window.location.search) window.history.replaceState(null, "", window.location.pathname);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.getElementById("live");
    const viewer = document.getElementById("viewer");
    if (live) keepFresh(live);
    if (viewer && typeof viewer.showModal === "function") followClicks(viewer);
    if (live) forgetFlash();
  });
})();
