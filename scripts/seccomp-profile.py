"""Groups the calls in strace -f logs of the VMM by thread kind (see seccomp-profile.sh)."""
import collections, re, sys

CALL = re.compile(r'^(\d+)\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)(.*)')
NAME = re.compile(r'prctl\(PR_SET_NAME, "([^"]*)"')
IOCTL = re.compile(r'^(?:0x[0-9a-f]+|\d+), (0x[0-9a-f]+)')

def kind(name):
    if name.startswith('vcpu'):
        return 'vcpu'
    if name.startswith('mgmt'):
        return 'management'
    if name.startswith('virtio-blk'):
        return 'block-io'
    return 'main' if name == 'vmm' else 'other:' + name

calls = collections.defaultdict(collections.Counter)
ioctls = collections.defaultdict(collections.Counter)
for path in sys.argv[1:]:
    names, seen, per_tid, per_tid_ioctl = {}, [], collections.defaultdict(set), collections.defaultdict(set)
    for line in open(path, errors='replace'):
        m = CALL.match(line)
        if not m:
            continue
        tid, call, rest = m.groups()
        if not seen:
            names[tid] = 'vmm'
        seen.append(tid)
        if call == 'execve' and tid == seen[0]:
            # The wrapper shell becoming the VMM: what the shell did is not the VMM's.
            per_tid[tid].clear()
            per_tid_ioctl[tid].clear()
            continue
        if call == 'prctl':
            n = NAME.search(line)
            if n:
                names[tid] = n.group(1)
        if 'resumed>' in line and call != 'exit':
            pass
        per_tid[tid].add(call)
        if call == 'ioctl':
            i = IOCTL.match(rest)
            if i:
                per_tid_ioctl[tid].add(i.group(1))
    for tid, cs in per_tid.items():
        k = kind(names.get(tid, '?'))
        for c in cs:
            calls[k][c] += 1
        for i in per_tid_ioctl[tid]:
            ioctls[k][i] += 1
for k in sorted(calls):
    print(f'{k}: {len(calls[k])} calls')
    print('  ' + ' '.join(sorted(calls[k])))
    if ioctls[k]:
        print('  ioctl: ' + ' '.join(sorted(ioctls[k])))
