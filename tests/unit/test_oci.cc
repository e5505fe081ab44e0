// OCI config.json parsing: the bundles `runc spec` writes, Keel's own default, the mapping of
// each section onto ContainerSpec, and one error per rule, each naming its field.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/capability.h>

#include <climits>
#include <cstdlib>
#include <filesystem>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "runtime/oci.h"

using namespace keel;
using namespace keel::runtime;
using json = nlohmann::json;

namespace {

// `runc spec` from runc 1.1.5 (spec 1.0.2-dev), byte for byte except "terminal": false.
const char* const kRuncSpec = R"json({
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": false,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620",
				"gid=5"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "network"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
})json";

// `runc spec --rootless`, run as root (hence hostID 0), with "terminal": false.
const char* const kRuncSpecRootless = R"json({
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": false,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "none",
			"source": "/sys",
			"options": [
				"rbind",
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"uidMappings": [
			{
				"containerID": 0,
				"hostID": 0,
				"size": 1
			}
		],
		"gidMappings": [
			{
				"containerID": 0,
				"hostID": 0,
				"size": 1
			}
		],
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			},
			{
				"type": "user"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
})json";

// A bundle directory with an empty rootfs/ in it, removed at the end of the test.
struct TempBundle {
    std::string dir;
    TempBundle() {
        char tmpl[] = "/tmp/keel-oci-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        REQUIRE(::mkdir((dir + "/rootfs").c_str(), 0755) == 0);
    }
    ~TempBundle() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

std::string real(const std::string& p) {
    char buf[PATH_MAX];
    REQUIRE(::realpath(p.c_str(), buf) != nullptr);
    return buf;
}

// The smallest config keel accepts; error tests change one thing in it.
json minimal() {
    return json::parse(R"({
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "mount"}]}
    })");
}

ContainerSpec parse_ok(const json& doc, const std::string& bundle) {
    auto spec = oci::parse_config(doc.dump(), bundle);
    INFO(doc.dump());
    if (!spec) FAIL(spec.error().str());
    return *spec;
}

std::string error_of(const json& doc, const std::string& bundle) {
    auto spec = oci::parse_config(doc.dump(), bundle);
    INFO(doc.dump());
    REQUIRE_FALSE(spec.ok());
    return spec.error().str();
}

const Mount& mount_at(const ContainerSpec& spec, const std::string& dest) {
    for (const auto& m : spec.mounts)
        if (m.destination == dest) return m;
    FAIL("no mount at " + dest);
    throw;
}

std::vector<NsType> ns_types(const ContainerSpec& spec) {
    std::vector<NsType> out;
    for (const auto& n : spec.namespaces)
        out.push_back(n.type);
    return out;
}

} // namespace

TEST_CASE("oci: the config `runc spec` writes parses unchanged") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    auto r = oci::parse_config(kRuncSpec, bundle);
    if (!r) FAIL(r.error().str());
    const ContainerSpec& spec = *r;

    CHECK(spec.rootfs == real(bundle + "/rootfs"));
    CHECK(spec.readonly_root);
    CHECK_FALSE(spec.terminal);
    CHECK(spec.args == std::vector<std::string>{"sh"});
    CHECK(spec.env ==
          std::vector<std::string>{
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"});
    CHECK(spec.cwd == "/");
    CHECK(spec.uid == 0);
    CHECK(spec.gid == 0);
    CHECK(spec.hostname == "runc");
    CHECK(spec.no_new_privileges);

    const std::vector<int> caps = {CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE};
    CHECK(spec.caps.bounding == caps);
    CHECK(spec.caps.effective == caps);
    CHECK(spec.caps.permitted == caps);
    CHECK(spec.caps.ambient == caps);
    CHECK(spec.caps.inheritable.empty());

    REQUIRE(spec.rlimits.size() == 1);
    CHECK(spec.rlimits[0].resource == RLIMIT_NOFILE);
    CHECK(spec.rlimits[0].soft == 1024);
    CHECK(spec.rlimits[0].hard == 1024);

    CHECK(ns_types(spec) ==
          std::vector<NsType>{NsType::pid, NsType::net, NsType::ipc, NsType::uts, NsType::mount});
    for (const auto& n : spec.namespaces)
        CHECK(n.path.empty());

    REQUIRE(spec.mounts.size() == 7);
    const Mount& proc = mount_at(spec, "/proc");
    CHECK(proc.type == "proc");
    CHECK(proc.source == "proc");
    CHECK(proc.flags == 0);
    const Mount& sys = mount_at(spec, "/sys");
    CHECK(sys.type == "sysfs");
    CHECK(sys.flags == (MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV));
    CHECK_FALSE(sys.bind());
    CHECK(sys.data.empty());
    const Mount& dev = mount_at(spec, "/dev");
    CHECK(dev.flags == (MS_NOSUID | MS_STRICTATIME));
    CHECK(dev.data == "mode=755,size=65536k");
    const Mount& pts = mount_at(spec, "/dev/pts");
    CHECK(pts.flags == (MS_NOSUID | MS_NOEXEC));
    CHECK(pts.data == "newinstance,ptmxmode=0666,mode=0620,gid=5");
    const Mount& cg = mount_at(spec, "/sys/fs/cgroup");
    CHECK(cg.flags == (MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY));

    CHECK(spec.masked_paths.size() == 10);
    CHECK(spec.masked_paths[2] == "/proc/kcore");
    CHECK(spec.readonly_paths == std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq",
                                                          "/proc/sys", "/proc/sysrq-trigger"});
    CHECK_FALSE(spec.resources.any());
    CHECK(spec.cgroup_path.empty());
    CHECK_FALSE(spec.seccomp);
}

TEST_CASE("oci: the config `runc spec --rootless` writes parses unchanged") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    auto r = oci::parse_config(kRuncSpecRootless, bundle);
    if (!r) FAIL(r.error().str());
    const ContainerSpec& spec = *r;
    CHECK(ns_types(spec) ==
          std::vector<NsType>{NsType::pid, NsType::ipc, NsType::uts, NsType::mount, NsType::user});
    REQUIRE(spec.uid_maps.size() == 1);
    CHECK(spec.uid_maps[0].inside == 0);
    CHECK(spec.uid_maps[0].count == 1);
    REQUIRE(spec.gid_maps.size() == 1);
    const Mount& sys = mount_at(spec, "/sys");
    CHECK(sys.bind());
    CHECK(sys.source == "/sys");
    CHECK(sys.flags == (MS_BIND | MS_REC | MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY));
}

TEST_CASE("oci: the default config is runc's, with keel's hostname and a cgroup namespace") {
    json ours = json::parse(oci::default_config_json(false));
    json theirs = json::parse(kRuncSpec);
    theirs["process"]["terminal"] = true;
    theirs["hostname"] = "keel";
    theirs["linux"]["namespaces"].push_back({{"type", "cgroup"}});
    CHECK(ours == theirs);

    json ours_rootless = json::parse(oci::default_config_json(true));
    json theirs_rootless = json::parse(kRuncSpecRootless);
    theirs_rootless["process"]["terminal"] = true;
    theirs_rootless["hostname"] = "keel";
    auto& ns = theirs_rootless["linux"]["namespaces"];
    ns.insert(ns.begin() + 4, json::object({{"type", "cgroup"}}));
    theirs_rootless["linux"]["uidMappings"][0]["hostID"] = ::geteuid();
    theirs_rootless["linux"]["gidMappings"][0]["hostID"] = ::getegid();
    CHECK(ours_rootless == theirs_rootless);
}

TEST_CASE("oci: the default config round-trips through parse_config") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    auto spec = oci::parse_config(oci::default_config_json(false), bundle);
    if (!spec) FAIL(spec.error().str());
    CHECK(spec->terminal);
    CHECK(spec->hostname == "keel");
    CHECK(spec->has_namespace(NsType::cgroup));
    CHECK_FALSE(spec->has_namespace(NsType::user));

    auto rootless = oci::parse_config(oci::default_config_json(true), bundle);
    if (!rootless) FAIL(rootless.error().str());
    CHECK(rootless->has_namespace(NsType::user));
    CHECK_FALSE(rootless->has_namespace(NsType::net));
    REQUIRE(rootless->uid_maps.size() == 1);
    CHECK(rootless->uid_maps[0].outside == ::geteuid());
    CHECK(rootless->gid_maps[0].outside == ::getegid());
}

TEST_CASE("oci: load_bundle reads config.json and names it in errors") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    REQUIRE(write_file_atomic(bundle + "/config.json", oci::default_config_json(false)));
    auto spec = oci::load_bundle(bundle);
    if (!spec) FAIL(spec.error().str());
    CHECK(spec->rootfs == real(bundle + "/rootfs"));

    REQUIRE(write_file_atomic(bundle + "/config.json", "{}"));
    auto bad = oci::load_bundle(bundle);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().str() == bundle + "/config.json: ociVersion: required");

    REQUIRE(write_file_atomic(bundle + "/config.json", "{"));
    bad = oci::load_bundle(bundle);
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error().str(),
               Catch::StartsWith(bundle + "/config.json: invalid JSON at byte 2: "));

    CHECK_FALSE(oci::load_bundle(bundle + "/missing").ok());
}

TEST_CASE("oci: capability names") {
    CHECK(oci::capability_from_name("CAP_CHOWN") == 0);
    CHECK(oci::capability_from_name("CAP_NET_ADMIN") == 12);
    CHECK(oci::capability_from_name("CAP_CHECKPOINT_RESTORE") == 40);
    CHECK(oci::capability_from_name("CAP_FOO") == -1);
    CHECK(oci::capability_from_name("NET_ADMIN") == -1);
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
        CHECK(oci::capability_from_name(oci::capability_name(cap)) == cap);
    CHECK(oci::capability_name(CAP_SYS_ADMIN) == "CAP_SYS_ADMIN");
    CHECK(oci::capability_name(99).empty());
}

TEST_CASE("oci: mounts map options onto flags, propagation and data") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    json doc = minimal();
    doc["mounts"] = json::parse(R"([
        {"destination": "/data", "type": "bind", "source": "data", "options": ["ro"]},
        {"destination": "/host", "type": "none", "source": "/srv",
         "options": ["rbind", "rprivate", "nosuid", "ro", "rw"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["noexec", "slave", "mode=1777", "size=1m"]}
    ])");
    ContainerSpec spec = parse_ok(doc, bundle);
    REQUIRE(spec.mounts.size() == 3);
    CHECK(spec.mounts[0].source == bundle + "/data");
    CHECK(spec.mounts[0].flags == (MS_BIND | MS_RDONLY));
    CHECK(spec.mounts[1].bind());
    CHECK(spec.mounts[1].flags == (MS_BIND | MS_REC | MS_NOSUID));
    CHECK(spec.mounts[1].propagation == (MS_PRIVATE | MS_REC));
    CHECK_FALSE(spec.mounts[2].bind());
    CHECK(spec.mounts[2].flags == MS_NOEXEC);
    CHECK(spec.mounts[2].propagation == MS_SLAVE);
    CHECK(spec.mounts[2].data == "mode=1777,size=1m");
}

TEST_CASE("oci: process, namespaces, devices and sysctls map onto ContainerSpec") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    json doc = minimal();
    doc["process"] = json::parse(R"({
        "terminal": true, "consoleSize": {"height": 24, "width": 80},
        "user": {"uid": 1000, "gid": 100, "umask": 18, "additionalGids": [5, 6]},
        "args": ["/bin/app", "-v"], "env": ["A=1"], "cwd": "/work",
        "capabilities": {"bounding": ["CAP_SYS_ADMIN"], "inheritable": []},
        "oomScoreAdj": -500, "apparmorProfile": "", "selinuxLabel": ""
    })");
    doc["hostname"] = "box";
    doc["annotations"] = {{"org.example/key", "value"}};
    doc["linux"] = json::parse(R"({
        "namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/run/netns/x"},
                       {"type": "user"}, {"type": "time"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "rootfsPropagation": "rslave",
        "mountLabel": ""
    })");
    ContainerSpec spec = parse_ok(doc, bundle);
    CHECK(spec.terminal);
    CHECK(spec.uid == 1000);
    CHECK(spec.gid == 100);
    CHECK(spec.umask == mode_t{022});
    CHECK(spec.additional_gids == std::vector<gid_t>{5, 6});
    CHECK(spec.args == std::vector<std::string>{"/bin/app", "-v"});
    CHECK(spec.cwd == "/work");
    CHECK(spec.caps.bounding == std::vector<int>{CAP_SYS_ADMIN});
    CHECK(spec.caps.effective.empty());
    CHECK_FALSE(spec.no_new_privileges); // the spec's default
    CHECK(spec.oom_score_adj == -500);
    CHECK(spec.hostname == "box");
    REQUIRE(spec.find_namespace(NsType::net));
    CHECK(spec.find_namespace(NsType::net)->path == "/run/netns/x");
    CHECK(spec.has_namespace(NsType::time));
    REQUIRE(spec.uid_maps.size() == 1);
    CHECK(spec.uid_maps[0].outside == 100000);
    CHECK(spec.uid_maps[0].count == 65536);
    REQUIRE(spec.devices.size() == 1);
    CHECK(spec.devices[0].path == "/dev/fuse");
    CHECK(spec.devices[0].major == 10);
    CHECK(spec.devices[0].minor == 229);
    CHECK(spec.devices[0].mode == 0666);
    CHECK(spec.sysctl.at("net.ipv4.ip_forward") == "1");
    CHECK(spec.rootfs_propagation == (MS_SLAVE | MS_REC));
}

TEST_CASE("oci: linux.sysctl allows only the sysctls of namespaces the container owns") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    json doc = minimal();
    auto with = [&](std::vector<const char*> namespaces, const char* key) {
        doc["linux"]["namespaces"] = {{{"type", "mount"}}};
        for (const char* n : namespaces)
            doc["linux"]["namespaces"].push_back({{"type", n}});
        doc["linux"]["sysctl"] = {{key, "1"}};
        return oci::parse_config(doc.dump(), bundle);
    };
    auto refused = [&](std::vector<const char*> namespaces, const char* key) {
        auto r = with(namespaces, key);
        INFO(key);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().str(),
                   Catch::StartsWith(std::string("linux.sysctl.") + key + ": \"" + key + "\": "));
        return r.error().str();
    };
    auto allowed = [&](std::vector<const char*> namespaces, const char* key) {
        auto r = with(namespaces, key);
        INFO(key);
        if (!r) FAIL(r.error().str());
        CHECK(r->sysctl.at(key) == "1");
    };

    SECTION("host-wide sysctls are refused by name, whatever the namespaces") {
        std::vector<const char*> all = {"ipc", "uts", "network", "pid", "cgroup"};
        for (const char* key :
             {"kernel.core_pattern", "kernel.printk_ratelimit_burst", "vm.overcommit_memory",
              "fs.file-max", "kernel.modprobe", "kernel.msgmaxx", "fs.mqueue"})
            CHECK_THAT(refused(all, key), Catch::Contains("not namespaced"));
        CHECK_THAT(refused(all, "net.core.rmem_max"), Catch::Contains("not namespaced"));
        CHECK_THAT(refused(all, "net.core.bpf_jit_enable"), Catch::Contains("not namespaced"));
    }
    SECTION("IPC sysctls need an IPC namespace") {
        for (const char* key :
             {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
              "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "fs.mqueue.msg_max"}) {
            allowed({"ipc"}, key);
            CHECK_THAT(refused({"uts", "network"}, key),
                       Catch::Contains("needs its own ipc namespace"));
        }
    }
    SECTION("UTS sysctls need a UTS namespace") {
        for (const char* key : {"kernel.hostname", "kernel.domainname"}) {
            allowed({"uts"}, key);
            CHECK_THAT(refused({"ipc", "network"}, key),
                       Catch::Contains("needs its own uts namespace"));
        }
    }
    SECTION("net sysctls need a network namespace that is not the runtime's") {
        allowed({"network"}, "net.ipv4.ip_forward");
        allowed({"network"}, "net.core.somaxconn");
        CHECK_THAT(refused({"ipc", "uts"}, "net.ipv4.ip_forward"),
                   Catch::Contains("needs its own network namespace"));
        doc["linux"]["namespaces"] = {{{"type", "mount"}},
                                      {{"type", "network"}, {"path", "/proc/self/ns/net"}}};
        doc["linux"]["sysctl"] = {{"net.ipv4.ip_forward", "1"}};
        auto r = oci::parse_config(doc.dump(), bundle);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().str(), Catch::Contains("/proc/self/ns/net is the runtime's own"));
    }
    SECTION("names that are not sysctl names") {
        for (const char* key :
             {"net./../kernel.core_pattern", "net.ipv4..ip_forward", "net.", ".net.x", "net.a b"})
            CHECK_THAT(refused({"network"}, key), Catch::Contains("not a sysctl name"));
    }
}

TEST_CASE("oci: cgroupsPath and resources map onto cgroup v2") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    json doc = minimal();
    doc["linux"]["cgroupsPath"] = "/keel/box";
    doc["linux"]["resources"] = json::parse(R"({
        "memory": {"limit": 268435456, "swap": 536870912},
        "pids": {"limit": 100},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1,
                     "minor": 3, "access": "rwm"}],
        "hugepageLimits": [], "blockIO": {}
    })");
    doc["process"]["capabilities"] = {{"bounding", {"CAP_MKNOD"}}};
    ContainerSpec spec = parse_ok(doc, bundle);
    CHECK(spec.cgroup_path == "keel/box");
    CHECK(spec.resources.memory_max == int64_t{268435456});
    CHECK(spec.resources.memory_swap == int64_t{536870912});
    CHECK(spec.resources.pids_max == int64_t{100});
    CHECK(spec.resources.cpu_quota == int64_t{50000});
    CHECK(spec.resources.cpu_period == uint64_t{100000});
    CHECK(spec.resources.cpu_weight == uint64_t{39});
    // The deny-all an engine writes, with CAP_MKNOD and no user namespace: enforced, not refused.
    CHECK(spec.device_rules == std::vector<DeviceRule>{{false, 'a', -1, -1, DeviceRule::all},
                                                       {true, 'c', 1, 3, DeviceRule::all}});

    SECTION("cpu shares -> weight, as runc and crun convert them") {
        auto weight = [&](uint64_t shares) {
            json d = minimal();
            d["linux"]["resources"] = {{"cpu", {{"shares", shares}}}};
            return parse_ok(d, bundle).resources.cpu_weight;
        };
        CHECK(weight(2) == uint64_t{1});
        CHECK(weight(1024) == uint64_t{39});
        CHECK(weight(262144) == uint64_t{10000});
        CHECK_FALSE(weight(0)); // unset
    }
    SECTION("a period alone keeps the quota unlimited") {
        json d = minimal();
        d["linux"]["resources"] = {{"cpu", {{"period", 50000}}}};
        auto r = parse_ok(d, bundle).resources;
        CHECK(r.cpu_quota == int64_t{-1});
        CHECK(r.cpu_period == uint64_t{50000});
    }
    SECTION("-1 and 0 leave memory unlimited") {
        json d = minimal();
        d["linux"]["resources"] = {{"memory", {{"limit", -1}, {"swap", -1}}}};
        auto r = parse_ok(d, bundle).resources;
        CHECK_FALSE(r.memory_max);
        CHECK(r.memory_swap == int64_t{-1});
    }
}

TEST_CASE("oci: linux.seccomp maps onto SeccompProfile") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    json doc = minimal();
    doc["linux"]["seccomp"] = json::parse(R"({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    })");
    ContainerSpec spec = parse_ok(doc, bundle);
    REQUIRE(spec.seccomp);
    const SeccompProfile& p = *spec.seccomp;
    CHECK(p.default_action == "SCMP_ACT_ERRNO");
    CHECK(p.default_errno == 38);
    CHECK(p.architectures == std::vector<std::string>{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"});
    CHECK(p.flags == std::vector<std::string>{"SECCOMP_FILTER_FLAG_SPEC_ALLOW"});
    REQUIRE(p.syscalls.size() == 3);
    CHECK(p.syscalls[0].names == std::vector<std::string>{"read", "write"});
    CHECK(p.syscalls[0].action == "SCMP_ACT_ALLOW");
    CHECK_FALSE(p.syscalls[0].errno_ret);
    REQUIRE(p.syscalls[1].args.size() == 1);
    CHECK(p.syscalls[1].args[0].index == 0);
    CHECK(p.syscalls[1].args[0].value == 8);
    CHECK(p.syscalls[1].args[0].op == "SCMP_CMP_EQ");
    CHECK(p.syscalls[2].errno_ret == 1);
    CHECK(p.syscalls[2].args[0].value == 2114060288);
    CHECK(p.syscalls[2].args[0].op == "SCMP_CMP_MASKED_EQ");
}

TEST_CASE("oci: errors name the field") {
    TempBundle temp;
    const std::string& bundle = temp.dir;
    json doc = minimal();
    auto error = [&] { return error_of(doc, bundle); };

    SECTION("invalid JSON") {
        auto r = oci::parse_config(R"({"ociVersion": })", bundle);
        REQUIRE_FALSE(r.ok());
        // The closing brace, where a value should be, is the 16th byte.
        CHECK_THAT(r.error().str(), Catch::StartsWith("config.json: invalid JSON at byte 16: "));
        r = oci::parse_config("[]", bundle);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().str() == "config.json: expected an object");
        // Found by fuzz_oci: nlohmann reports this as out_of_range, which escaped parse_config.
        r = oci::parse_config(R"({"ociVersion": "1.0.2", "process": {"args": [1e999]}})", bundle);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().str() == "config.json: invalid JSON: number overflow parsing '1e999'");
    }
    SECTION("deep nesting in an unsupported field") {
        // Found by fuzz_oci: is_empty recursed once per level and overflowed the stack.
        std::string text = minimal().dump();
        std::string deep;
        for (int i = 0; i < 500000; i++)
            deep += "{\"a\":";
        deep += "null" + std::string(500000, '}');
        text.insert(text.size() - 1, ",\"hooks\":" + deep);
        CHECK(oci::parse_config(text, bundle).ok());
        text.replace(text.find("null"), 4, "1");
        auto r = oci::parse_config(text, bundle);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().str() == "hooks: not supported by keel");
    }
    SECTION("missing root") {
        doc.erase("root");
        CHECK(error() == "root: required");
    }
    SECTION("nonexistent rootfs") {
        doc["root"]["path"] = "/nonexistent/keel-rootfs";
        CHECK(error() == "root.path: rootfs /nonexistent/keel-rootfs does not exist");
        doc["root"]["path"] = "nope";
        CHECK(error() == "root.path: rootfs " + bundle + "/nope does not exist");
    }
    SECTION("unsupported ociVersion") {
        doc["ociVersion"] = "2.0.0";
        CHECK(error() ==
              R"(ociVersion: unsupported version "2.0.0" (keel accepts 1.0.x to 1.2.x))");
    }
    SECTION("unknown capability") {
        doc["process"]["capabilities"] = {{"bounding", {"CAP_KILL", "CAP_CHOWN", "CAP_FOO"}}};
        CHECK(error() == "process.capabilities.bounding[2]: unknown capability CAP_FOO");
    }
    SECTION("relative mount destination") {
        doc["mounts"] = json::array();
        for (const char* d : {"/proc", "/dev", "/sys", "tmp"})
            doc["mounts"].push_back({{"destination", d}, {"type", "tmpfs"}, {"source", "tmpfs"}});
        CHECK(error() == R"(mounts[3].destination: must be an absolute path, got "tmp")");
    }
    SECTION("mount options keel cannot honour") {
        doc["mounts"] = {{{"destination", "/x"},
                          {"type", "bind"},
                          {"source", "/x"},
                          {"options", {"rbind", "noexce"}}}};
        CHECK(error() == R"(mounts[0].options[1]: unknown option "noexce" for a bind mount)");
        doc["mounts"][0]["options"] = {"remount"};
        CHECK(error() == "mounts[0].options[0]: mount option remount is not supported by keel");
        doc["mounts"] = {{{"destination", "/x"}, {"source", "x"}}};
        CHECK(error() == "mounts[0].type: required unless the mount is a bind mount");
    }
    SECTION("a proc mount anywhere but /proc") {
        doc["mounts"] = {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                         {{"destination", "/p"}, {"type", "proc"}, {"source", "proc"}}};
        CHECK(error() == R"(mounts[1].destination: a proc mount goes on /proc only, got "/p")");
        doc["mounts"][1]["destination"] = "/proc/";
        CHECK(error() == R"(mounts[1].destination: a proc mount goes on /proc only, got "/proc/")");
        doc["mounts"][1]["destination"] = "/proc";
        parse_ok(doc, bundle);
    }
    SECTION("unknown top-level key") {
        doc["proces"] = json::object();
        CHECK(error() == "proces: unknown field (did you mean process?)");
    }
    SECTION("unsupported linux.intelRdt") {
        doc["linux"]["intelRdt"] = {{"closID", "guaranteed"}};
        CHECK(error() == "linux.intelRdt: not supported by keel");
    }
    SECTION("hooks: empty is fine, any hook is an error") {
        doc["hooks"] = {{"prestart", json::array()}};
        parse_ok(doc, bundle);
        doc["hooks"]["poststart"] = {{{"path", "/bin/true"}}};
        CHECK(error() == "hooks: not supported by keel");
    }
    SECTION("rlimit of unknown type") {
        doc["process"]["rlimits"] = {{{"type", "RLIMIT_FOO"}, {"hard", 1}, {"soft", 1}}};
        CHECK(error() == "process.rlimits[0].type: unknown rlimit type RLIMIT_FOO");
        doc["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"hard", 1}, {"soft", 2}}};
        CHECK(error() == "process.rlimits[0]: soft limit 2 is above hard limit 1");
    }
    SECTION("seccomp with an unknown action") {
        doc["linux"]["seccomp"] = {
            {"defaultAction", "SCMP_ACT_ALLOW"},
            {"syscalls", {{{"names", {"ptrace"}}, {"action", "SCMP_ACT_FOO"}}}}};
        CHECK(error() == "linux.seccomp.syscalls[0].action: unknown action SCMP_ACT_FOO");
        doc["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_KILL";
        doc["linux"]["seccomp"]["syscalls"][0]["errnoRet"] = 1;
        CHECK(error() == "linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or "
                         "SCMP_ACT_TRACE, not SCMP_ACT_KILL");
        doc["linux"]["seccomp"]["syscalls"] = json::array();
        doc["linux"]["seccomp"]["listenerPath"] = "/run/listener.sock";
        CHECK(error() == "linux.seccomp.listenerPath: not supported by keel");
    }
    SECTION("wrong types") {
        doc["process"]["args"] = "sh";
        CHECK(error() == "process.args: expected an array of strings");
        doc["process"]["args"] = json::array();
        CHECK(error() == "process.args: must not be empty");
        doc = minimal();
        doc["process"]["user"] = {{"uid", -1}, {"gid", 0}};
        CHECK(error() == "process.user.uid: must not be negative, got -1");
        doc["process"]["user"] = {{"uid", 1.5}, {"gid", 0}};
        CHECK(error() == "process.user.uid: expected an integer");
        doc = minimal();
        doc["process"]["cwd"] = "work";
        CHECK(error() == R"(process.cwd: must be an absolute path, got "work")");
    }
    SECTION("apparmor and selinux are accepted only empty") {
        doc["process"]["apparmorProfile"] = "docker-default";
        CHECK(error() == "process.apparmorProfile: not supported by keel");
    }
    SECTION("namespaces") {
        doc["linux"]["namespaces"].push_back({{"type", "net"}});
        CHECK(error() ==
              R"(linux.namespaces[1].type: unknown namespace type "net" (did you mean network?))");
        doc["linux"]["namespaces"][1]["type"] = "netwrk";
        CHECK(
            error() ==
            R"(linux.namespaces[1].type: unknown namespace type "netwrk" (did you mean network?))");
        doc["linux"]["namespaces"][1]["type"] = "mount";
        CHECK(error() == "linux.namespaces[1].type: duplicate namespace mount");
        doc = minimal();
        doc["linux"]["namespaces"] = json::array();
        CHECK(error() == "linux.namespaces: a mount namespace is required (keel sets up the root "
                         "inside it)");
        doc = minimal();
        doc["hostname"] = "box";
        CHECK(error() == "hostname: needs a uts namespace in linux.namespaces");
    }
    SECTION("a new user namespace needs mappings") {
        doc["linux"]["namespaces"].push_back({{"type", "user"}});
        CHECK(error() == "linux.uidMappings: required with a new user namespace");
        doc["linux"]["namespaces"][1]["path"] = "/proc/1/ns/user";
        parse_ok(doc, bundle);
        doc = minimal();
        doc["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 1000}, {"size", 1}}};
        CHECK(error() == "linux.uidMappings: needs a user namespace in linux.namespaces");
    }
    SECTION("cgroups and resources") {
        doc["linux"]["cgroupsPath"] = "system.slice:keel:box";
        CHECK_THAT(error(), Catch::StartsWith("linux.cgroupsPath: systemd-style"));
        doc["linux"]["cgroupsPath"] = "keel/../../escape";
        CHECK(error() == R"(linux.cgroupsPath: must not leave the cgroup2 root (".."))");
        doc = minimal();
        doc["linux"]["resources"] = {{"hugepageLimits", {{{"pageSize", "2MB"}, {"limit", 1}}}}};
        CHECK(error() == "linux.resources.hugepageLimits: not supported by keel");
        doc["linux"]["resources"] = {{"memory", {{"reservation", 1024}}}};
        CHECK(error() == "linux.resources.memory.reservation: not supported by keel");
        doc["linux"]["resources"] = {{"cpu", {{"shares", 1}}}};
        CHECK(error() == "linux.resources.cpu.shares: 1 is outside 2..262144");
        doc["linux"]["resources"] = {{"memory", {{"limit", 1000}, {"swap", 500}}}};
        CHECK(error() == "linux.resources.memory.swap: memory+swap 500 is below memory.limit 1000");
    }
    SECTION("device rules") {
        doc["linux"]["resources"] = {
            {"devices", {{{"allow", false}, {"type", "u"}, {"access", "rwm"}}}}};
        CHECK(error() ==
              R"(linux.resources.devices[0].type: unknown device type "u" (expected a, c or b))");
        doc["linux"]["resources"] = {
            {"devices", {{{"allow", true}, {"type", "c"}, {"access", "rx"}}}}};
        CHECK(error() ==
              R"(linux.resources.devices[0].access: expected letters from "rwm", got "rx")");
        doc["linux"]["resources"] = {
            {"devices", {{{"allow", true}, {"major", -2}, {"access", "r"}}}}};
        CHECK(error() ==
              "linux.resources.devices[0].major: -2 is not a device number (-1 means any)");
        doc["linux"]["resources"] = {{"devices", {{{"type", "c"}, {"access", "r"}}}}};
        CHECK_THAT(error(), Catch::StartsWith("linux.resources.devices[0]"));
    }
}
