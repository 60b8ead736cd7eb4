import sys
sys.path.insert(0, '/tmp/rwcap')
from resp import *
S = 27321
both(S, 'sentinel_get_master_addr', 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')
both(S, 'sentinel_get_master_addr_unknown', 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'nosuch')
both(S, 'sentinel_master', 'SENTINEL', 'MASTER', 'mymaster')
both(S, 'sentinel_masters', 'SENTINEL', 'MASTERS')
both(S, 'sentinel_replicas', 'SENTINEL', 'REPLICAS', 'mymaster')
both(S, 'sentinel_slaves', 'SENTINEL', 'SLAVES', 'mymaster')
both(S, 'sentinel_sentinels', 'SENTINEL', 'SENTINELS', 'mymaster')
both(S, 'role_sentinel', 'ROLE')
both(S, 'info_sentinel', 'INFO')
both(S, 'info_sentinel_section', 'INFO', 'sentinel')
both(S, 'hello_sentinel', 'HELLO', '2')
both(7311, 'role_master', 'ROLE')
both(7312, 'role_replica', 'ROLE')
both(7311, 'info_replication_master', 'INFO', 'replication')
both(7312, 'info_replication_replica', 'INFO', 'replication')
