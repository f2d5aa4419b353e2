"""The ChatGPT web app driven in a real Chromium: ``SORA_BACKEND=chatgpt-web``.

Opt-in, one account, one image at a time, a pause between two sends (the site's terms forbid
automated extraction, and accounts driven by scripts have been banned: see the README). Built
on the shared parts of ``sora_driver`` (browser, session, locate, diagnostics, login); here:

- ``settings``: its section of the configuration (light: no browser library);
- ``conversation``: the site's conversation answers, read into typed values (pure);
- ``classify``: what an exchange came to (an image, a limit, a refusal ...) and its error (pure);
- ``wording``: what is sent in words, and how a request is recognised again;
- ``pacing``: the interval between two sends, kept across restarts, waited on the stop event;
- ``following``: what each look at a conversation decides (wait, ask again, done);
- ``api``: the ``/backend-api`` calls, made inside the page with its own bearer token;
- ``chat_page``: the page as a person uses it (a new conversation, the composer, send);
- ``driver``: the order of the steps; ``backend``: what the daemon loads.
"""
