"""Client API management (JWT): log in, create a project, configure it and its use cases.

The Client API needs no project key: a login with the account's e-mail and password gives a
JWT, which the client remembers. The e-mail and password are read from WAYGPT_EMAIL and
WAYGPT_PASSWORD (the same variables the ``waygpt`` command line uses).

    export WAYGPT_EMAIL=you@example.com WAYGPT_PASSWORD=...
    python examples/client_api.py           # creates a scratch project and deletes it again

    python examples/client_api.py --demo    # local test server, no network
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from waygpt import NotFoundError, WayGPTClient


def manage(admin: WayGPTClient, email: str, password: str) -> None:
    login = admin.client_login(email, password)  # the token is remembered on `admin`
    print(f"logged in, token type {login['token_type']}, expires in {login['expires_in']} s")

    for project in admin.client_list_projects():
        print(f"existing project: {project['name']} ({project['id']})")

    project = admin.client_create_project("waygpt example (safe to delete)")
    project_id = project["id"]
    try:
        # Only the fields given are sent; the others keep their values.
        admin.client_update_project(
            project_id,
            allowed_models=["gpt-4o-mini", "yandexgpt-pro"],
            allowed_domains=["example.com"],
            rate_limit_rpm=30,
        )
        settings = admin.client_get_project(project_id)
        print("allowed models:", settings["allowed_models"], "| rpm:", settings["rate_limit_rpm"])

        use_case = admin.client_create_use_case(
            project_id,
            key="faq",
            name="FAQ bot",
            kind="chat",
            config={
                "system_prompt": "Answer from the FAQ only.",
                "models": [{"model_id": "gpt-4o-mini", "priority": 1}],
                "temperature": 0.2,
            },
        )
        admin.client_update_use_case(project_id, use_case["id"], is_active=False)
        fetched = admin.client_get_use_case(project_id, use_case["id"])
        print(f"use case {fetched['key']}: active={fetched['is_active']}")
        print("use cases:", [uc["key"] for uc in admin.client_list_use_cases(project_id)])

        # The project's own key works at once for the project-key endpoints.
        with WayGPTClient(api_url=admin.api_url, project_key=settings["api_key"]) as app:
            print("the new project's models:", len(app.get_models()))

        admin.client_delete_use_case(project_id, use_case["id"])
        try:
            admin.client_get_use_case(project_id, use_case["id"])
        except NotFoundError:
            print("use case deleted")
    finally:
        admin.client_delete_project(project_id)
        print("project deleted")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Manage projects and use cases (Client API).")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)
    if args.demo:
        from waygpt.testing import WayGPTTestServer

        with WayGPTTestServer() as server, WayGPTClient(api_url=server.url) as admin:
            manage(admin, server.user_email, server.user_password)
        return 0
    email, password = os.environ.get("WAYGPT_EMAIL"), os.environ.get("WAYGPT_PASSWORD")
    if not email or not password:
        parser.error("set WAYGPT_EMAIL and WAYGPT_PASSWORD, or use --demo")
    with WayGPTClient() as admin:  # WAYGPT_API_URL, if set, picks the server
        manage(admin, email, password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
