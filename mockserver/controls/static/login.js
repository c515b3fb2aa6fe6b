// The dashboard's login: the admin token goes once to POST /__mock/session in a header, and
// the answer sets a session cookie. A token in the URL's fragment (#token=...) is used the same
// way: browsers never send the fragment, and it is removed from the address bar at once.
"use strict";

(function () {
  const form = document.getElementById("login");
  const input = document.getElementById("token");
  const error = document.getElementById("login-error");

  async function logIn(token) {
    error.hidden = true;
    let response;
    try {
      response = await fetch("session", {
        method: "POST", headers: { "Authorization": "Bearer " + token }, credentials: "same-origin",
      });
    } catch (failure) {
      return show("The mock did not answer: " + failure.message);
    }
    if (response.status === 204) {
      location.replace(location.pathname);
      return;
    }
    show(response.status === 403 ? "Wrong token." : "Refused (" + response.status + ").");
  }

  function show(message) {
    error.textContent = message;
    error.hidden = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    logIn(input.value.trim());
  });

  function fromFragment() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) {
      history.replaceState(null, "", location.pathname + location.search);
      logIn(token);
    }
  }

  window.addEventListener("hashchange", fromFragment);
  fromFragment();
})();
