import socket, time, os
def frame_end(b, i=0):
    """End index of one RESP frame at b[i:], or None if incomplete."""
    if i >= len(b): return None
    t = chr(b[i]); nl = b.find(b'\r\n', i)
    if nl < 0: return None
    line = b[i+1:nl]; j = nl + 2
    if t in '+-:_,#(': return j
    if t in '$!=':
        n = int(line)
        if n < 0: return j
        return j + n + 2 if len(b) >= j + n + 2 else None
    if t in '*~>%|':
        n = int(line)
        if n < 0: return j
        if t in '%|': n *= 2
        for _ in range(n):
            j = frame_end(b, j)
            if j is None: return None
        if t == '|':
            return frame_end(b, j)
        return j
    raise ValueError('bad type %r at %d' % (t, i))
def enc(*args):
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b'$%d\r\n%s\r\n' % (len(a), a)
    return out
class Conn:
    def __init__(self, port, resp3=False):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.buf = b''
        if resp3: self.cmd('HELLO', '3')
    def read(self):
        while True:
            e = frame_end(self.buf) if self.buf else None
            if e is not None:
                f, self.buf = self.buf[:e], self.buf[e:]
                return f
            d = self.s.recv(65536)
            if not d: raise EOFError
            self.buf += d
    def cmd(self, *args):
        self.s.sendall(enc(*args)); return self.read()
DATA = os.environ.get('DATA', '/work/wt/rewrite/tests/unit/resp/data')
def cap(port, name, *args, resp3=False):
    f = Conn(port, resp3).cmd(*args)
    path = os.path.join(DATA, name + ('.resp3' if resp3 else '.resp2'))
    open(path, 'wb').write(f)
    print(path, len(f), f[:100])
    return f
def both(port, name, *args):
    return cap(port, name, *args), cap(port, name, *args, resp3=True)
