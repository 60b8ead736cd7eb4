import sys, time
sys.path.insert(0, '/tmp/rwcap')
from resp import *
P = [7301, 7302, 7303, 7304, 7305, 7306]
ids = {p: Conn(p).cmd('CLUSTER', 'MYID').split(b'\r\n')[1].decode() for p in P}
print(ids)
mode = sys.argv[1]
if mode == 'ip':
    both(7301, 'cluster_slots_ip', 'CLUSTER', 'SLOTS')
    both(7301, 'cluster_shards_ip', 'CLUSTER', 'SHARDS')
    both(7301, 'cluster_nodes_ip', 'CLUSTER', 'NODES')
    both(7301, 'cluster_replicas_ip', 'CLUSTER', 'REPLICAS', ids[7301])
    both(7301, 'cluster_slaves_ip', 'CLUSTER', 'SLAVES', ids[7301])
    both(7301, 'role_cluster_master', 'ROLE')
    both(7304, 'role_cluster_replica', 'ROLE')
    both(7301, 'info_replication_cluster_master', 'INFO', 'replication')
    both(7304, 'info_replication_cluster_replica', 'INFO', 'replication')
    both(7304, 'info_cluster_replica', 'INFO')
    both(7301, 'info_all_cluster_master', 'INFO', 'all')
    cap(7301, 'moved_ip', 'GET', 'foo')       # foo: slot 12182, on 7303
    cap(7301, 'moved_ip', 'GET', 'foo', resp3=True)
elif mode == 'ask':
    # foo's slot 12182 moves from 7303 to 7302: MIGRATING on the owner, IMPORTING on the target.
    print(Conn(7302).cmd('CLUSTER', 'SETSLOT', '12182', 'IMPORTING', ids[7303]))
    print(Conn(7303).cmd('CLUSTER', 'SETSLOT', '12182', 'MIGRATING', ids[7302]))
    cap(7303, 'ask_' + sys.argv[2], 'GET', 'foo')
    cap(7303, 'ask_' + sys.argv[2], 'GET', 'foo', resp3=True)
    print(Conn(7302).cmd('CLUSTER', 'SETSLOT', '12182', 'STABLE'))
    print(Conn(7303).cmd('CLUSTER', 'SETSLOT', '12182', 'STABLE'))
elif mode in ('ip_hostname', 'hostname', 'unknown'):
    both(7301, 'cluster_slots_' + mode, 'CLUSTER', 'SLOTS')
    both(7301, 'cluster_shards_' + mode, 'CLUSTER', 'SHARDS')
    both(7301, 'cluster_nodes_' + mode, 'CLUSTER', 'NODES')
    both(7301, 'cluster_replicas_' + mode, 'CLUSTER', 'REPLICAS', ids[7302])
    cap(7301, 'moved_' + mode, 'GET', 'foo')
    if mode != 'ip_hostname': cap(7301, 'moved_' + mode + '_b', 'GET', 'a')   # slot 15495 on 7303
    cap(7303, 'moved_' + mode + '_c', 'GET', 'b')   # slot 3300 on 7301
