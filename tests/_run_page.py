"""Run one page's examples as a reader does, in this fresh process: ``python _run_page.py PAGE``.

The page's running python blocks execute in order in one namespace (as
``docs_examples.page_code`` does), then the driver read from stdin runs in
that namespace: the lines a reader would type next (``asyncio.run(main())``).
The client examples read ``MEMCACHIER_USERNAME``, ``MEMCACHIER_PASSWORD`` and
``MEMCACHIER_BASE_URL`` (``AsyncAnalytics.from_env()``), which the test
points at an emulator served over TCP; ``username``, ``password`` and
``base_url``, names a page leaves to its reader, hold the same values.
"""

from __future__ import annotations

import os
import sys

from docs_examples import page_code


def main() -> None:
    page = sys.argv[1]
    driver = sys.stdin.read()
    namespace = page_code(
        page,
        username=os.environ["MEMCACHIER_USERNAME"],
        password=os.environ["MEMCACHIER_PASSWORD"],
        base_url=os.environ["MEMCACHIER_BASE_URL"],
    )
    exec(compile(driver, f"<the reader's next lines, after {page}>", "exec"), namespace)


if __name__ == "__main__":
    main()
