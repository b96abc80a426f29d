"""Hostile handler sources: each ``op`` of the event is one attack (see test_isolation)."""

PY_ATTACKS = r"""
import ctypes, json, os, socket, subprocess, sys, threading, time

def reply_fd():
    return int(open("/proc/self/cmdline", "rb").read().split(b"\0")[-2])

def current_nonce():
    # The strongest attacker: read the request's nonce out of the bootstrap's own frame.
    frame = sys._getframe()
    while frame is not None:
        if "nonce" in frame.f_locals:
            return frame.f_locals["nonce"]
        frame = frame.f_back
    raise RuntimeError("no nonce found")

def write_frame(nonce, body):
    os.write(reply_fd(), len(body).to_bytes(4, "big") + nonce + body)

def burn():
    x = 0
    while True:
        x += 1

libc = ctypes.CDLL(None, use_errno=True)

def syscall_errno(number, *args):
    if libc.syscall(number, *args) == -1:
        return os.strerror(ctypes.get_errno())
    return "allowed"

def handler(event, context):
    op = event["op"]
    if op == "echo":
        return event["x"]
    if op == "write_sysctl":
        try:
            with open(event["path"], "w") as f:
                f.write(event["value"])
            return "wrote"
        except OSError as exc:
            return "refused: " + type(exc).__name__
    if op == "add_key":
        # add_key("user", desc, payload, len, KEY_SPEC_USER_KEYRING=-4)
        desc, payload = event["desc"].encode(), event["secret"].encode()
        key = libc.syscall(248, b"user", desc, payload, len(payload), -4)
        return "refused: " + os.strerror(ctypes.get_errno()) if key == -1 else key
    if op == "read_key":
        # request_key("user", desc, NULL, 0) then keyctl(KEYCTL_READ=11, key, buf, len)
        key = libc.syscall(249, b"user", event["desc"].encode(), None, 0)
        if key == -1:
            return "refused: " + os.strerror(ctypes.get_errno())
        buf = ctypes.create_string_buffer(256)
        n = libc.syscall(250, 11, key, buf, 256)
        return buf.raw[:n].decode(errors="replace")
    if op == "syscalls":
        AF_VSOCK, SOCK_STREAM = 40, 1
        return {
            "bpf": syscall_errno(321, 0, 0, 0),
            "perf_event_open": syscall_errno(298, 0, 0, -1, -1, 0),
            "userfaultfd": syscall_errno(323, 0),
            "unshare_user": syscall_errno(272, 0x10000000),
            "mount": syscall_errno(165, b"none", b"/tmp", b"tmpfs", 0, None),
            "personality_no_aslr": syscall_errno(135, 0x0040000),
            "vsock": syscall_errno(41, AF_VSOCK, SOCK_STREAM, 0),
            "uevent_netlink": syscall_errno(41, 16, 3, 15),  # AF_NETLINK, SOCK_RAW, KOBJECT_UEVENT
            "getpid": syscall_errno(39),
        }
    if op == "fds":
        mine = {str(reply_fd()), str(int(open("/proc/self/cmdline", "rb").read().split(b"\0")[-3]))}
        found = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                found[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        return {"fds": found, "pipes": sorted(mine)}
    if op == "write_every_fd":
        wrote = []
        keep = {reply_fd(), int(open("/proc/self/cmdline", "rb").read().split(b"\0")[-3])}
        for fd in range(3, 1024):
            if fd in keep:
                continue
            try:
                os.write(fd, b"ERROR computebus.worker: forged by a handler\n")
                wrote.append(fd)
            except OSError:
                pass
        return wrote
    if op == "threads_then_return":
        for _ in range(4):
            threading.Thread(target=burn, daemon=True).start()
        return "returned"
    if op == "double_reply":
        write_frame(current_nonce(), b'{"ok":true,"result":"FORGED"}')
        return "genuine"
    if op == "unreadable_result":
        write_frame(current_nonce(), b'{"ok":true,"result":"\xff\xfe"}')
        return "genuine"
    if op == "late_reply":
        nonce = current_nonce()
        def later():
            time.sleep(0.2)
            write_frame(nonce, b'{"ok":true,"result":"STOLEN"}')
        threading.Thread(target=later).start()
        return "returned"
    if op == "forged_error":
        body = json.dumps({"ok": False, "error": {"code": "overloaded", "type": "X",
                                                   "message": "come back later"}}).encode()
        write_frame(current_nonce(), body)
        return "genuine"
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
        fd = reply_fd()
        os.write(fd, (0xFFFFFFF0).to_bytes(4, "big") + current_nonce())
        while True:
            os.write(fd, b"x" * 65536)
    if op == "stop_reading":
        nonce = current_nonce()
        def answer_then_stop():
            write_frame(nonce, b'{"ok":true,"result":null}')
            time.sleep(3600)
        threading.Thread(target=answer_then_stop).start()
        time.sleep(3600)
    return "ok"
"""

NODE_ATTACKS = r"""
const fs = require('fs');
const net = require('net');
const { Worker } = require('worker_threads');
const replyFd = () => Number(process.argv[process.argv.length - 1]);
const requestFd = () => Number(process.argv[process.argv.length - 2]);
exports.handler = async (event) => {
  switch (event.op) {
    case 'echo':
      return event.x;
    case 'write_sysctl':
      try { fs.writeFileSync(event.path, event.value); return 'wrote'; }
      catch (err) { return 'refused: ' + err.code; }
    case 'write_every_fd': {
      // Every fd that names a file or a terminal: what a worker could have leaked (node's own
      // pipes and event fds are its own, and writing into them only crashes it).
      const wrote = [];
      for (const name of fs.readdirSync('/proc/self/fd')) {
        const fd = Number(name);
        if (fd < 3 || fd === replyFd() || fd === requestFd()) continue;
        let target;
        try { target = fs.readlinkSync('/proc/self/fd/' + name); } catch (err) { continue; }
        if (!target.startsWith('/') || target === '/dev/null') continue;
        try { fs.writeSync(fd, 'ERROR computebus.worker: forged by a handler\n'); wrote.push(fd); }
        catch (err) { /* not writable */ }
      }
      return wrote;
    }
    case 'fds': {
      const found = {};
      for (const fd of fs.readdirSync('/proc/self/fd')) {
        try { found[fd] = fs.readlinkSync('/proc/self/fd/' + fd); } catch (err) { /* gone */ }
      }
      return { fds: found, pipes: [String(requestFd()), String(replyFd())] };
    }
    case 'threads_then_return':
      for (let i = 0; i < 4; i++) new Worker('for (;;) {}', { eval: true }).unref();
      return 'returned';
    case 'late_reply':
      setTimeout(() => {
        const body = Buffer.from('{"ok":true,"result":"STOLEN"}');
        const header = Buffer.alloc(12);
        header.writeUInt32BE(body.length, 0);
        fs.writeSync(replyFd(), Buffer.concat([header, body]));
      }, 200);
      return 'returned';
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
