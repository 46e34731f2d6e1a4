"""Peak resident memory of the calling process, for the benchmark workers."""
import resource


def peak_rss_mib() -> float:
    """This process's own peak RSS in MiB: /proc/self/status VmHWM, which starts afresh with each program. getrusage's
    ru_maxrss does not: Linux carries it across fork and exec, so a worker started by a large parent would report at
    least the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
