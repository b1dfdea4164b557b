"""The shipped nginx reverse proxy (deploy/nginx), run on loopback for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from support.http import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)

def render_proxy(tmp, listen: int, upstream: int) -> str:
    """The shipped nginx.conf and site, with local ports and paths; returns the conf path."""
    deploy = os.path.join(REPO, "deploy", "nginx")
    with open(os.path.join(deploy, "xsell.conf.template"), encoding="utf-8") as fh:
        site = fh.read().replace("@LISTEN@", f"127.0.0.1:{listen}").replace(
            "@UPSTREAM@", f"127.0.0.1:{upstream}")
    with open(os.path.join(deploy, "nginx.conf"), encoding="utf-8") as fh:
        main = fh.read().replace("/tmp/", f"{tmp}/")
    if os.geteuid() == 0:  # CI runs as root: workers as root too (temp paths are ours)
        main = "user root;\n" + main
    with open(os.path.join(tmp, "xsell-site.conf"), "w", encoding="utf-8") as fh:
        fh.write(site)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(main)
    return conf


class Proxy:
    def __init__(self, tmp: str, upstream: int):
        self.port = free_port()
        conf = render_proxy(tmp, self.port, upstream)
        # nginx's log to a file: a pipe nobody reads fills up (a line per 413...) and then
        # blocks nginx itself.
        self.log_path = os.path.join(tmp, "nginx.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NGINX, "-c", conf, "-p", tmp, "-e", "stderr",
                                      "-g", "daemon off;"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                        raise RuntimeError(fh.read()[-2000:])
                time.sleep(0.05)
        raise TimeoutError("nginx did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
