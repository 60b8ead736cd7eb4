#!/bin/sh
# How the captures in ../ were taken (Redis 7.0.15, by hand, in this order); not run by the tests.
# Each step's nodes must be up before its script runs; kill them all at the end.
set -e
cd /tmp/rwcap  # resp.py, cap_cluster.py, cap_sent.py and events.py here

# Cluster: 3 masters + 3 replicas.
for p in 7301 7302 7303 7304 7305 7306; do
  redis-server --port $p --cluster-enabled yes --cluster-config-file nodes-$p.conf --save '' \
    --appendonly no --daemonize yes --pidfile $PWD/$p.pid --logfile $PWD/$p.log
done
redis-cli --cluster create 127.0.0.1:7301 127.0.0.1:7302 127.0.0.1:7303 127.0.0.1:7304 \
  127.0.0.1:7305 127.0.0.1:7306 --cluster-replicas 1 --cluster-yes
# (wait for cluster_state:ok and the replicas online)
python3 cap_cluster.py ip
python3 cap_cluster.py ask ip
for p in 7301 7302 7303 7304 7305 7306; do
  redis-cli -p $p config set cluster-announce-hostname node-$p.example
done
# (wait until CLUSTER NODES shows the 6 host names)
python3 cap_cluster.py ip_hostname
for p in 7301 7302 7303 7304 7305 7306; do
  redis-cli -p $p config set cluster-preferred-endpoint-type hostname
done
python3 cap_cluster.py hostname
python3 cap_cluster.py ask hostname
redis-cli -p 7302 config set cluster-announce-hostname ''
# (wait until it has spread) then, with cap's helpers: cluster_{slots,shards,nodes}_hostname_missing
# (CLUSTER SLOTS/SHARDS/NODES on 7301) and moved_hostname_missing (GET c on 7301)
for p in 7301 7302 7303 7304 7305 7306; do
  redis-cli -p $p config set cluster-preferred-endpoint-type unknown-endpoint
done
python3 cap_cluster.py unknown
python3 cap_cluster.py ask unknown

# Sentinel: master 7311, replicas 7312 and 7313, sentinels 27321-27323 (quorum 2,
# down-after-milliseconds 1000, failover-timeout 4000).
redis-server --port 7311 --save '' --appendonly no --daemonize yes
redis-server --port 7312 --save '' --appendonly no --daemonize yes --replicaof 127.0.0.1 7311
redis-server --port 7313 --save '' --appendonly no --daemonize yes --replicaof 127.0.0.1 7311
for s in 27321 27322 27323; do
  printf 'port %s\ndaemonize yes\nsentinel monitor mymaster 127.0.0.1 7311 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 4000\n' $s > s$s.conf
done
redis-server s27321.conf --sentinel
python3 events.py 90 &   # subscribes on 27321 before the other sentinels start
redis-server s27322.conf --sentinel
redis-server s27323.conf --sentinel
# (wait until 27321 sees 2 other sentinels)
python3 cap_sent.py
redis-cli -p 27321 sentinel failover mymaster
# (wait for +failover-end) then stop 7313, wait for its +sdown, start it again, wait for -sdown,
# then touch /tmp/rwcap/sent/stop to end events.py
redis-cli -p 27321 sentinel config set resolve-hostnames yes
redis-cli -p 27321 sentinel config set announce-hostnames yes
redis-cli -p 27321 sentinel monitor hostmaster localhost 7312 2
# then sentinel_{get_master_addr,master,replicas}_hostname: SENTINEL GET-MASTER-ADDR-BY-NAME,
# MASTER, REPLICAS hostmaster on 27321
