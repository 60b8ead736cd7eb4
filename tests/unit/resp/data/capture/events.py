import sys, time, threading
sys.path.insert(0, '/tmp/rwcap')
from resp import *
# Raw stream of pub/sub traffic from sentinel 27321, RESP2 and RESP3, pattern and channel forms.
out = {}
def listen(name, resp3, args, stop):
    c = Conn(27321, resp3)
    c.s.sendall(enc(*args))
    buf = []
    c.s.settimeout(0.5)
    while not stop.is_set():
        try:
            buf.append(c.read())
        except (socket.timeout, TimeoutError):
            continue
    out[name] = buf
stop = threading.Event()
ts = [threading.Thread(target=listen, args=a + (stop,)) for a in [
    ('psub2', False, ('PSUBSCRIBE', '*')), ('psub3', True, ('PSUBSCRIBE', '*')),
    ('sub2', False, ('SUBSCRIBE', '+switch-master', '+sentinel', '+slave', '+sdown', '-sdown')),
    ('sub3', True, ('SUBSCRIBE', '+switch-master', '+sentinel', '+slave', '+sdown', '-sdown'))]]
for t in ts: t.start()
open('/tmp/rwcap/sent/ready', 'w').write('1')
deadline = time.time() + float(sys.argv[1])
while time.time() < deadline and not __import__('os').path.exists('/tmp/rwcap/sent/stop'):
    time.sleep(0.2)
stop.set()
for t in ts: t.join()
for k, v in out.items():
    open(DATA + '/sentinel_events_' + k + ('.resp3' if k.endswith('3') else '.resp2'), 'wb').write(b''.join(v))
    print(k, len(v))
