/* keel-probe: a static multi-call program placed in test rootfs images. It prints what a
 * container sees, one fact per subcommand, so host tests assert on facts instead of guesses
 * (the idea of crun's tests/init.c).
 *
 * Output is machine-readable: `key=value` lines, or plain values one per line. A failed
 * attempt prints `errno=NAME` and the probe still exits 0, so the test can tell "the
 * container refused" from "the probe broke" (exit 2, message on stderr).
 *
 *   caps                   CapInh= CapPrm= CapEff= CapBnd= CapAmb= NoNewPrivs= Seccomp=
 *   ids                    uid= gid= euid= egid= groups= uid_map=... gid_map=...
 *   pid                    pid= ppid=
 *   pids                   visible numeric /proc entries, one per line
 *   hostname               nodename= domainname=
 *   mounts                 /proc/self/mountinfo verbatim
 *   cgroup                 /proc/self/cgroup verbatim
 *   syscall NAME           attempts NAME with harmless arguments: `ok` or `errno=NAME`
 *   fds                    FD=TARGET for each open descriptor
 *   write PATH             open(O_WRONLY|O_CREAT|O_TRUNC) + write: `ok` or `errno=`
 *   open-wronly PATH       open(O_WRONLY) without O_CREAT: `ok` or `errno=`
 *   read PATH              bytes=N (at most 1 MiB is read) or `errno=`
 *   ls PATH                directory entries except . and .., one per line, or `errno=`
 *   stat PATH              type= mode= uid= gid= rdev=MAJOR:MINOR size= (lstat), or `errno=`
 *   mknod PATH c|b MAJ MIN makes a device node (mode 0666): `ok` or `errno=`
 *   open PATH r|w|rw       open(O_RDONLY|O_WRONLY|O_RDWR, no O_CREAT), closed again: `ok`
 *                          or `errno=` (a device node's open is what the device cgroup checks)
 *   exit N                 exits with code N
 *   kill SIG               kills itself with SIG (handler reset to default, unblocked);
 *                          as PID 1 of a PID namespace the kernel ignores it: exit 3
 *   fault                  dies of a real SIGSEGV, which even PID 1 cannot ignore
 *   sleep N                sleeps N seconds
 *   env                    the environment, one VAR=value per line
 *   cwd                    the working directory
 *   rlimit NAME            soft= hard= (NAME like NOFILE or RLIMIT_NOFILE)
 *   maxrss CMD [ARGS]      on the host, for benchmarks: runs CMD and prints its peak RSS
 *                          (`maxrss_kb=N`, stderr), exiting with its code. A small static
 *                          parent, so the figure is CMD's own and not an interpreter's.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct errno_name {
    int value;
    const char* name;
};

/* Stringised so a name can never disagree with its value. */
/* clang-format off */
#define E(e) {e, #e}
/* clang-format on */
static const struct errno_name errno_names[] = {
    E(EPERM),     E(ENOENT), E(ESRCH),    E(EINTR),  E(EIO),         E(ENXIO),        E(E2BIG),
    E(ENOEXEC),   E(EBADF),  E(ECHILD),   E(EAGAIN), E(ENOMEM),      E(EACCES),       E(EFAULT),
    E(ENOTBLK),   E(EBUSY),  E(EEXIST),   E(EXDEV),  E(ENODEV),      E(ENOTDIR),      E(EISDIR),
    E(EINVAL),    E(ENFILE), E(EMFILE),   E(ENOTTY), E(ETXTBSY),     E(EFBIG),        E(ENOSPC),
    E(ESPIPE),    E(EROFS),  E(EMLINK),   E(EPIPE),  E(ERANGE),      E(ENAMETOOLONG), E(ENOSYS),
    E(ENOTEMPTY), E(ELOOP),  E(ENODATA),  E(ENOKEY), E(EKEYREVOKED), E(EOPNOTSUPP),   E(EDQUOT),
    E(EOVERFLOW), E(ESTALE), E(EMSGSIZE),
};
#undef E

static const char* errno_name(int e) {
    for (size_t i = 0; i < ARRAY_LEN(errno_names); i++)
        if (errno_names[i].value == e) return errno_names[i].name;
    static char unknown[32];
    snprintf(unknown, sizeof unknown, "E%d", e);
    return unknown;
}

static int usage(void) {
    fputs("usage: probe caps|ids|pid|pids|hostname|mounts|cgroup|fds|env|cwd\n"
          "       probe syscall NAME | write PATH | open-wronly PATH | read PATH | ls PATH | stat "
          "PATH\n"
          "       probe exit N | kill SIG | fault | sleep N | rlimit NAME\n"
          "       probe mknod PATH c|b MAJOR MINOR | open PATH r|w|rw\n",
          stderr);
    return 2;
}

/* The probe broke (not the container refusing something): exit 2 so the test notices. */
static int fail(const char* what) {
    fprintf(stderr, "probe: %s: %s\n", what, errno_name(errno));
    return 2;
}

static int report(long rc) {
    if (rc < 0)
        printf("errno=%s\n", errno_name(errno));
    else
        puts("ok");
    return 0;
}

static int parse_int(const char* s, long* out) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return -1;
    *out = v;
    return 0;
}

static int cat_file(const char* path) {
    FILE* f = fopen(path, "re");
    if (!f) return fail(path);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    return 0;
}

static int cmd_caps(void) {
    static const char* const keys[] = {"CapInh", "CapPrm",     "CapEff", "CapBnd",
                                       "CapAmb", "NoNewPrivs", "Seccomp"};
    FILE* f = fopen("/proc/self/status", "re");
    if (!f) return fail("/proc/self/status");
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char* colon = strchr(line, ':');
        if (!colon) continue;
        *colon = '\0';
        for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
            if (strcmp(line, keys[i]) != 0) continue;
            char* value = colon + 1;
            value += strspn(value, " \t");
            value[strcspn(value, "\n")] = '\0';
            printf("%s=%s\n", keys[i], value);
        }
    }
    fclose(f);
    return 0;
}

/* Prints each map line as `key=inside outside count`, whitespace collapsed. */
static int print_id_map(const char* key, const char* path) {
    FILE* f = fopen(path, "re");
    if (!f) {
        printf("%s=errno=%s\n", key, errno_name(errno));
        return 0;
    }
    unsigned long inside, outside, count;
    while (fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3)
        printf("%s=%lu %lu %lu\n", key, inside, outside, count);
    fclose(f);
    return 0;
}

static int cmd_ids(void) {
    printf("uid=%u\ngid=%u\neuid=%u\negid=%u\n", (unsigned)getuid(), (unsigned)getgid(),
           (unsigned)geteuid(), (unsigned)getegid());
    gid_t groups[NGROUPS_MAX];
    int n = getgroups(NGROUPS_MAX, groups);
    if (n < 0) return fail("getgroups");
    printf("groups=");
    for (int i = 0; i < n; i++)
        printf("%s%u", i ? "," : "", (unsigned)groups[i]);
    putchar('\n');
    print_id_map("uid_map", "/proc/self/uid_map");
    print_id_map("gid_map", "/proc/self/gid_map");
    return 0;
}

static int is_number(const char* s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int cmd_pids(void) {
    DIR* d = opendir("/proc");
    if (!d) return fail("/proc");
    struct dirent* e;
    while ((e = readdir(d)))
        if (is_number(e->d_name)) puts(e->d_name);
    closedir(d);
    return 0;
}

static int cmd_hostname(void) {
    struct utsname u;
    if (uname(&u) < 0) return fail("uname");
    printf("nodename=%s\ndomainname=%s\n", u.nodename, u.domainname);
    return 0;
}

static int cmd_fds(void) {
    DIR* d = opendir("/proc/self/fd");
    if (!d) return fail("/proc/self/fd");
    int own = dirfd(d);
    struct dirent* e;
    while ((e = readdir(d))) {
        if (!is_number(e->d_name) || atoi(e->d_name) == own) continue;
        char link[PATH_MAX + 1];
        ssize_t n = readlinkat(own, e->d_name, link, sizeof link - 1);
        if (n < 0)
            printf("%s=errno=%s\n", e->d_name, errno_name(errno));
        else
            printf("%s=%.*s\n", e->d_name, (int)n, link);
    }
    closedir(d);
    return 0;
}

static int cmd_write(const char* path, int flags) {
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) return report(-1);
    if (write(fd, "probe\n", 6) != 6) {
        int e = errno;
        close(fd);
        errno = e;
        return report(-1);
    }
    close(fd);
    return report(0);
}

static int cmd_read(const char* path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return report(-1);
    /* Bounded: an unmasked /proc/kcore is as large as the address space. */
    static char buf[65536];
    long total = 0;
    while (total < (1L << 20)) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return report(-1);
        }
        if (n == 0) break;
        total += n;
    }
    close(fd);
    printf("bytes=%ld\n", total);
    return 0;
}

static int cmd_ls(const char* path) {
    DIR* d = opendir(path);
    if (!d) return report(-1);
    struct dirent* e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) puts(e->d_name);
    closedir(d);
    return 0;
}

static const char* file_type(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFREG:
        return "file";
    case S_IFDIR:
        return "dir";
    case S_IFLNK:
        return "symlink";
    case S_IFCHR:
        return "char";
    case S_IFBLK:
        return "block";
    case S_IFIFO:
        return "fifo";
    case S_IFSOCK:
        return "socket";
    default:
        return "unknown";
    }
}

static int cmd_stat(const char* path) {
    struct stat st;
    if (lstat(path, &st) < 0) return report(-1);
    printf("type=%s\nmode=%04o\nuid=%u\ngid=%u\nrdev=%u:%u\nsize=%lld\n", file_type(st.st_mode),
           (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid,
           major(st.st_rdev), minor(st.st_rdev), (long long)st.st_size);
    return 0;
}

static int cmd_mknod(const char* path, const char* type, const char* maj, const char* min) {
    long major_nr, minor_nr;
    if ((strcmp(type, "c") != 0 && strcmp(type, "b") != 0) || parse_int(maj, &major_nr) < 0 ||
        parse_int(min, &minor_nr) < 0)
        return usage();
    mode_t kind = type[0] == 'b' ? S_IFBLK : S_IFCHR;
    return report(mknod(path, kind | 0666, makedev(major_nr, minor_nr)));
}

static int cmd_open(const char* path, const char* how) {
    int flags = strcmp(how, "r") == 0    ? O_RDONLY
                : strcmp(how, "w") == 0  ? O_WRONLY
                : strcmp(how, "rw") == 0 ? O_RDWR
                                         : -1;
    if (flags < 0) return usage();
    int fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) close(fd);
    return report(fd);
}

static int cmd_kill(const char* arg) {
    long sig;
    if (parse_int(arg, &sig) < 0 || sig <= 0 || sig >= NSIG) return usage();
    signal((int)sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, (int)sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    /* raise() alone is not enough for PID 1 of a PID namespace: the kernel drops signals
     * with a default action sent to it from inside its own namespace. Fall through to
     * report that, rather than pretending the signal was delivered. */
    raise((int)sig);
    fprintf(stderr, "probe: still alive after signal %ld\n", sig);
    return 3;
}

/* A genuine fault, not raise(): the kernel forces it through even to a namespace's init. */
static int cmd_fault(void) {
    volatile int* page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return fail("mmap");
    *page = 1;
    fputs("probe: still alive after writing to a PROT_NONE page\n", stderr);
    return 3;
}

struct rlimit_name {
    int resource;
    const char* name;
};

static const struct rlimit_name rlimit_names[] = {
    {RLIMIT_AS, "AS"},           {RLIMIT_CORE, "CORE"},         {RLIMIT_CPU, "CPU"},
    {RLIMIT_DATA, "DATA"},       {RLIMIT_FSIZE, "FSIZE"},       {RLIMIT_LOCKS, "LOCKS"},
    {RLIMIT_MEMLOCK, "MEMLOCK"}, {RLIMIT_MSGQUEUE, "MSGQUEUE"}, {RLIMIT_NICE, "NICE"},
    {RLIMIT_NOFILE, "NOFILE"},   {RLIMIT_NPROC, "NPROC"},       {RLIMIT_RSS, "RSS"},
    {RLIMIT_RTPRIO, "RTPRIO"},   {RLIMIT_RTTIME, "RTTIME"},     {RLIMIT_SIGPENDING, "SIGPENDING"},
    {RLIMIT_STACK, "STACK"},
};

static void print_limit(const char* key, rlim_t v) {
    if (v == RLIM_INFINITY)
        printf("%s=unlimited\n", key);
    else
        printf("%s=%llu\n", key, (unsigned long long)v);
}

static int cmd_rlimit(const char* name) {
    if (strncmp(name, "RLIMIT_", 7) == 0) name += 7;
    for (size_t i = 0; i < ARRAY_LEN(rlimit_names); i++) {
        if (strcmp(rlimit_names[i].name, name) != 0) continue;
        struct rlimit rl;
        if (getrlimit(rlimit_names[i].resource, &rl) < 0) return fail("getrlimit");
        print_limit("soft", rl.rlim_cur);
        print_limit("hard", rl.rlim_max);
        return 0;
    }
    return usage();
}

/* clone() with namespace flags, the way a container breakout would try it. The child exits
 * at once; only whether the kernel (or seccomp) allowed the clone matters. */
static long try_clone(unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid < 0 ? -1 : 0;
}

/* Each attempt is harmless whatever the outcome: invalid arguments the kernel rejects after
 * its permission check, or an effect confined to this short-lived process. */
static int cmd_syscall(const char* name) {
    long rc;
    if (strcmp(name, "mount") == 0) {
        rc = mount("none", "/tmp", "tmpfs", 0, NULL);
        if (rc == 0) umount2("/tmp", MNT_DETACH);
    } else if (strcmp(name, "umount2") == 0) {
        rc = umount2("/keel-probe-nonexistent", 0);
    } else if (strcmp(name, "keyctl") == 0) {
        /* KEYCTL_GET_KEYRING_ID of the thread keyring, without creating it. */
        rc = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -1 /* thread */, 0);
    } else if (strcmp(name, "add_key") == 0) {
        /* The thread keyring dies with this process. */
        rc = syscall(SYS_add_key, "user", "keel-probe", "x", 1, -1 /* thread keyring */);
    } else if (strcmp(name, "request_key") == 0) {
        rc = syscall(SYS_request_key, "user", "keel-probe-nonexistent", NULL, 0);
    } else if (strcmp(name, "kexec_load") == 0) {
        rc = syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xdead0000UL /* invalid flags */);
    } else if (strcmp(name, "unshare") == 0) {
        rc = unshare(CLONE_NEWNS);
    } else if (strcmp(name, "unshare_user") == 0) {
        rc = unshare(CLONE_NEWUSER);
    } else if (strcmp(name, "setns") == 0) {
        rc = setns(-1, 0);
    } else if (strcmp(name, "pivot_root") == 0) {
        rc = syscall(SYS_pivot_root, "/keel-probe-nonexistent", "/keel-probe-nonexistent");
    } else if (strcmp(name, "chroot") == 0) {
        rc = chroot("/");
    } else if (strcmp(name, "reboot") == 0) {
        /* Wrong magic: the kernel checks CAP_SYS_BOOT, then the magic, and returns EINVAL
         * without doing anything. */
        rc = syscall(SYS_reboot, 0, 0, 0, NULL);
    } else if (strcmp(name, "bpf") == 0) {
        rc = syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, NULL, 0);
    } else if (strcmp(name, "perf_event_open") == 0) {
        rc = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    } else if (strcmp(name, "open_by_handle_at") == 0) {
        rc = syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, O_RDONLY);
    } else if (strcmp(name, "swapon") == 0) {
        rc = syscall(SYS_swapon, "/keel-probe-nonexistent", 0);
    } else if (strcmp(name, "swapoff") == 0) {
        rc = syscall(SYS_swapoff, "/keel-probe-nonexistent");
    } else if (strcmp(name, "init_module") == 0) {
        rc = syscall(SYS_init_module, NULL, 0UL, "");
    } else if (strcmp(name, "finit_module") == 0) {
        rc = syscall(SYS_finit_module, -1, "", 0);
    } else if (strcmp(name, "delete_module") == 0) {
        rc = syscall(SYS_delete_module, "keel_probe_nonexistent", O_NONBLOCK);
    } else if (strcmp(name, "ptrace") == 0) {
        /* Not our tracee: ESRCH when ptrace itself is allowed. */
        rc = syscall(SYS_ptrace, 3 /* PTRACE_PEEKUSER */, getpid(), NULL, NULL);
    } else if (strcmp(name, "clone_newns") == 0) {
        rc = try_clone(CLONE_NEWNS);
    } else if (strcmp(name, "clone_newuser") == 0) {
        rc = try_clone(CLONE_NEWUSER);
    } else if (strcmp(name, "sethostname") == 0) {
        /* Sets the same name again: a no-op when allowed. */
        char host[256];
        if (gethostname(host, sizeof host) < 0) return fail("gethostname");
        rc = sethostname(host, strlen(host));
    } else if (strcmp(name, "getpid") == 0) {
        rc = syscall(SYS_getpid);
    } else {
        fprintf(stderr, "probe: unknown syscall %s\n", name);
        return 2;
    }
    return report(rc);
}

static int cmd_maxrss(char** argv) {
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 2;
    fprintf(stderr, "maxrss_kb=%ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char** argv) {
    /* Line-buffered output would interleave badly with a signal; flush after each line. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return usage();
    const char* cmd = argv[1];
    const char* arg = argc > 2 ? argv[2] : NULL;

    if (strcmp(cmd, "maxrss") == 0 && argc > 2) return cmd_maxrss(argv + 2);
    if (strcmp(cmd, "caps") == 0) return cmd_caps();
    if (strcmp(cmd, "ids") == 0) return cmd_ids();
    if (strcmp(cmd, "pid") == 0) {
        printf("pid=%d\nppid=%d\n", (int)getpid(), (int)getppid());
        return 0;
    }
    if (strcmp(cmd, "pids") == 0) return cmd_pids();
    if (strcmp(cmd, "hostname") == 0) return cmd_hostname();
    if (strcmp(cmd, "mounts") == 0) return cat_file("/proc/self/mountinfo");
    if (strcmp(cmd, "cgroup") == 0) return cat_file("/proc/self/cgroup");
    if (strcmp(cmd, "fds") == 0) return cmd_fds();
    if (strcmp(cmd, "env") == 0) {
        for (char** e = environ; *e; e++)
            puts(*e);
        return 0;
    }
    if (strcmp(cmd, "fault") == 0) return cmd_fault();
    if (strcmp(cmd, "cwd") == 0) {
        char buf[PATH_MAX];
        if (!getcwd(buf, sizeof buf)) return fail("getcwd");
        puts(buf);
        return 0;
    }
    if (!arg) return usage();
    if (strcmp(cmd, "syscall") == 0) return cmd_syscall(arg);
    if (strcmp(cmd, "write") == 0) return cmd_write(arg, O_WRONLY | O_CREAT | O_TRUNC);
    if (strcmp(cmd, "open-wronly") == 0) return cmd_write(arg, O_WRONLY);
    if (strcmp(cmd, "read") == 0) return cmd_read(arg);
    if (strcmp(cmd, "ls") == 0) return cmd_ls(arg);
    if (strcmp(cmd, "stat") == 0) return cmd_stat(arg);
    if (strcmp(cmd, "rlimit") == 0) return cmd_rlimit(arg);
    if (strcmp(cmd, "kill") == 0) return cmd_kill(arg);
    if (strcmp(cmd, "mknod") == 0 && argc == 6) return cmd_mknod(arg, argv[3], argv[4], argv[5]);
    if (strcmp(cmd, "open") == 0 && argc == 4) return cmd_open(arg, argv[3]);

    long n;
    if (parse_int(arg, &n) < 0 || n < 0) return usage();
    if (strcmp(cmd, "exit") == 0) return (int)(n & 0xff);
    if (strcmp(cmd, "sleep") == 0) {
        unsigned left = (unsigned)n;
        while (left > 0)
            left = sleep(left);
        return 0;
    }
    return usage();
}
