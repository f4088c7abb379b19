// Routing, login and the polling loop. Pages: #/ (overview) and #/endpoint/NAME.
import { api, ApiError, getKey, setKey } from "./api.js";
import { esc } from "./format.js";
import { renderOverview } from "./overview.js";
import { renderEndpoint } from "./endpoint.js";

const POLL_MS = 3000;
const app = document.getElementById("app");
let generation = 0;
let account = null;

function showLogin(message = "") {
  generation += 1;
  document.getElementById("nav").innerHTML = "";
  document.getElementById("who").innerHTML = "";
  document.getElementById("notices").innerHTML = "";
  app.innerHTML = `
    <section class="login">
      <h1>Sign in</h1>
      <p class="muted">Use an API key: <code>$COLDBREW_HOME/admin.key</code> or one from
        <code>coldbrew keys create --account NAME</code>. It is kept in this tab only
        (sessionStorage).</p>
      <form id="login-form">
        <input id="key" type="password" autocomplete="off" placeholder="cb_…" required>
        <button type="submit">Sign in</button>
      </form>
      <p id="login-error" class="error" role="alert">${esc(message)}</p>
    </section>`;
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = document.getElementById("key").value.trim();
    try {
      const me = await api("/v1/account", key);
      setKey(key);
      account = me.name;
      route();
    } catch (error) {
      const hint = error.hint ? ` (${error.hint})` : "";
      document.getElementById("login-error").textContent =
        `Sign-in failed: ${error.message}${hint}`;
    }
  });
}

function chrome() {
  document.getElementById("nav").innerHTML = `<a href="#/">Overview</a>`;
  document.getElementById("who").innerHTML =
    `account <b id="account">${esc(account)}</b> <button id="logout">Sign out</button>`;
  document.getElementById("logout").addEventListener("click", () => {
    setKey(null);
    account = null;
    showLogin();
  });
}

// Render the page now and again every POLL_MS until the route changes.
async function loop(render, mine) {
  while (mine === generation) {
    try {
      await render(app, () => mine === generation);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        setKey(null);
        showLogin(`Signed out: ${error.message}`);
        return;
      }
      if (mine !== generation) return;
      app.dataset.page = "";
      app.innerHTML = `<p><a href="#/">← Overview</a></p>
        <p class="error" id="page-error">${esc(error.message)}</p>
        <p class="muted">${esc(error.hint || "")}</p>`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function route() {
  if (!getKey()) return showLogin();
  if (!account) {
    try {
      account = (await api("/v1/account")).name;
    } catch (error) {
      setKey(null);
      return showLogin(`Sign-in failed: ${error.message}`);
    }
  }
  chrome();
  generation += 1;
  const mine = generation;
  app.innerHTML = `<p class="muted">loading…</p>`;
  const match = location.hash.match(/^#\/endpoint\/([^/]+)$/);
  if (match) {
    const name = decodeURIComponent(match[1]);
    await loop((root, alive) => renderEndpoint(root, name, alive), mine);
  } else {
    await loop((root, alive) => renderOverview(root, alive), mine);
  }
}

window.addEventListener("hashchange", route);
route();
