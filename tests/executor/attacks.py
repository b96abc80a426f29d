"""Hostile handler sources: each ``op`` of the event is one attack (see test_isolation)."""

PY_ATTACKS = r"""
import json, os, socket, subprocess, sys, time

def handler(event, context):
    op = event["op"]
    if op == "write_workspace":
        for path in ("index.py", "new.txt"):
            try:
                with open(path, "w") as f:
                    f.write("owned")
                return "wrote " + path
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
        return "refused: " + last
    if op == "write_anywhere":
        wrote = []
        for d in ("/", "/tmp", "/usr", "/workspace", "/opt", "/dev/shm", "/var/tmp"):
            try:
                with open(os.path.join(d, "x.txt"), "w") as f:
                    f.write("x")
                wrote.append(d)
            except OSError:
                pass
        return wrote
    if op == "remount":
        return subprocess.run(["mount", "-o", "remount,rw", "/workspace"],
                              capture_output=True, text=True).returncode
    if op == "read":
        try:
            with open(event["path"], "rb") as f:
                return "read %d bytes" % len(f.read())
        except OSError as exc:
            return "refused: " + type(exc).__name__
    if op == "read_text":
        try:
            with open(event["path"], "rb") as f:
                return f.read(4096).decode(errors="replace")
        except OSError as exc:
            return "refused: " + type(exc).__name__
    if op == "listdir":
        try:
            return sorted(os.listdir(event["path"]))
        except OSError as exc:
            return "refused: " + type(exc).__name__
    if op == "environ":
        return dict(os.environ)
    if op == "whoami":
        status = open("/proc/self/status").read()
        caps = [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")]
        return {"uid": os.getuid(), "gid": os.getgid(), "caps": caps[0],
                "procs": len([p for p in os.listdir("/proc") if p.isdigit()])}
    if op == "connect":
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", event["port"]))
            return "connected"
        except OSError as exc:
            return "refused: " + type(exc).__name__
        finally:
            s.close()
    if op == "memory":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    if op == "forkbomb":
        children = 0
        try:
            for _ in range(10_000):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
        except OSError as exc:
            print(f"fork refused after {children}: {exc}")
        time.sleep(60)
    if op == "escape":
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(120)
            os._exit(0)
        time.sleep(60)
    if op == "flood":
        chunk = "y" * (1024 * 1024)
        for _ in range(100):
            sys.stdout.write(chunk)
        return "flooded"
    if op == "kill9":
        os.kill(os.getpid(), 9)
    if op == "big":
        return "z" * (20 * 1024 * 1024)
    if op == "nested_userns":
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode
    if op == "huge_frame":
        reply_fd = int(open("/proc/self/cmdline", "rb").read().split(b"\0")[-2])
        os.write(reply_fd, (0xFFFFFFF0).to_bytes(4, "big"))
        while True:
            os.write(reply_fd, b"x" * 65536)
    if op == "stop_reading":
        import threading
        reply_fd = int(open("/proc/self/cmdline", "rb").read().split(b"\0")[-2])
        def answer_then_stop():
            os.write(reply_fd, b"\x00\x00\x00\x19" + b'{"ok":true,"result":null}')
            time.sleep(3600)
        threading.Thread(target=answer_then_stop).start()
        time.sleep(3600)
    return "ok"
"""

NODE_ATTACKS = r"""
const fs = require('fs');
const net = require('net');
exports.handler = async (event) => {
  switch (event.op) {
    case 'write_workspace':
      try { fs.writeFileSync('index.js', 'owned'); return 'wrote index.js'; }
      catch (err) { return 'refused: ' + err.code; }
    case 'memory': {
      const hog = [];
      while (true) hog.push(new Array(1e6).fill(Math.random()));
    }
    case 'connect':
      return await new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: event.port });
        s.setTimeout(2000, () => { s.destroy(); resolve('refused: timeout'); });
        s.on('connect', () => { s.destroy(); resolve('connected'); });
        s.on('error', (err) => resolve('refused: ' + err.code));
      });
    case 'flood':
      for (let i = 0; i < 100; i++) process.stdout.write('y'.repeat(1024 * 1024));
      return 'flooded';
    case 'environ':
      return process.env;
    case 'big':
      return 'z'.repeat(20 * 1024 * 1024);
    default:
      return 'ok';
  }
};
"""
