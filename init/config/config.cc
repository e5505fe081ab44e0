// The configuration: one key table, validation with file:line:column, the overlay with its
// last-good fallback. yaml-cpp throws; nothing thrown leaves this file.
#include "config/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "common/fd.h"
#include "common/strings.h"

namespace keel::config {

const std::vector<KeySpec>& keys() {
    static const std::vector<KeySpec> table = {
        {"hostname", Type::hostname, "keel", "the host's name (set at boot)"},
        {"allow_privileged", Type::boolean, "false",
         "let service files ask for `privileged: true` (each start is warned about)"},
        {"modules.lock", Type::boolean, "true",
         "set kernel.modules_disabled=1 after the allow-list is loaded (read from the kernel "
         "command line only: "
         "modules load before the state partition is mounted)"},
        {"network.interface", Type::string, "eth0", "the interface the network service configures"},
        {"network.address", Type::cidr, "''", "a static address like 10.0.0.5/24; empty: DHCP"},
        {"network.gateway", Type::ipv4, "''", "the default gateway with a static address"},
        {"network.dns", Type::ipv4_list, "[]", "name servers with a static address"},
        {"ssh.authorized_keys", Type::ssh_keys, "[]",
         "public keys that may log in as `keel` over SSH"},
        {"user_runtime.host_id", Type::id, "100000",
         "the host uid and gid that are root in the user runtime's user namespace (user_namespace: "
         "true)"},
        {"user_runtime.size", Type::id, "65536", "how many ids its user namespace maps"},
        {"services.*.enabled", Type::boolean, "",
         "a service's enabled state, overriding its file (`keel service enable|disable` write it)"},
    };
    return table;
}

namespace {

struct Invalid {
    std::string message;
};

std::vector<std::string> split_key(const std::string& k) {
    return split(k, '.');
}

bool matches(const std::string& pattern, const std::string& key) {
    auto p = split_key(pattern), k = split_key(key);
    if (p.size() != k.size()) return false;
    for (size_t i = 0; i < p.size(); ++i)
        if (p[i] != "*" && p[i] != k[i]) return false;
    return true;
}

// The names allowed under `prefix` ("" for the top level; "services.x" for a service).
std::vector<std::string> children(const std::string& prefix) {
    std::vector<std::string> out;
    auto depth = prefix.empty() ? 0 : split_key(prefix).size();
    for (const auto& k : keys()) {
        auto parts = split_key(k.key);
        if (parts.size() <= depth) continue;
        std::string head;
        for (size_t i = 0; i < depth; ++i)
            head += (i ? "." : "") + parts[i];
        if (!prefix.empty() && !matches(head, prefix)) continue;
        if (std::find(out.begin(), out.end(), parts[depth]) == out.end())
            out.push_back(parts[depth]);
    }
    return out;
}

bool valid_ipv4(const std::string& s) {
    in_addr a{};
    return ::inet_pton(AF_INET, s.c_str(), &a) == 1;
}

// Why one authorized key is not one sshd will take ("" when it is): TYPE BASE64 [COMMENT],
// an Ed25519 type (the sshd service's OpenSSH is built without OpenSSL: no ECDSA or RSA), on
// one line. (Options such as command="..." are not for the configuration to set, and a line
// break would smuggle in another line: the sshd service writes one key per line.)
std::string public_key_problem(const std::string& k) {
    static const std::vector<std::string> accepted = {"ssh-ed25519", "sk-ssh-ed25519@openssh.com"};
    static const std::vector<std::string> without_openssl = {
        "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-rsa"};
    const std::string shape = "is not a public key (ssh-ed25519 AAAA... [comment])";
    for (char c : k)
        if (std::iscntrl(static_cast<unsigned char>(c)) && c != '\t') return shape;
    auto sp = k.find(' ');
    std::string type = k.substr(0, sp);
    if (std::find(without_openssl.begin(), without_openssl.end(), type) != without_openssl.end())
        return "is a " + type + " key: Keel's sshd takes Ed25519 keys only (ssh-keygen -t ed25519)";
    if (sp == std::string::npos ||
        std::find(accepted.begin(), accepted.end(), type) == accepted.end())
        return shape;
    auto end = k.find_first_of(" \t", sp + 1);
    std::string blob =
        k.substr(sp + 1, end == std::string::npos ? std::string::npos : end - sp - 1);
    bool base64 =
        !blob.empty() && blob.find_first_not_of(
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
                             std::string::npos;
    return base64 ? "" : shape;
}

// Checks one value; throws Invalid with `where` (file:line:col: key) in front.
void check_value(const KeySpec& spec, const YAML::Node& n, const std::string& where) {
    auto fail = [&](const std::string& what) { throw Invalid{where + ": " + what}; };
    auto scalar = [&]() {
        if (!n.IsScalar()) fail("expected a single value");
        return n.as<std::string>();
    };
    switch (spec.type) {
    case Type::string:
        scalar();
        break;
    case Type::id: {
        std::string v = scalar();
        bool ok = !v.empty() && v.size() <= 10 &&
                  v.find_first_not_of("0123456789") == std::string::npos && std::stoull(v) > 0 &&
                  std::stoull(v) < 0xffffffffULL;
        if (!ok) fail("'" + v + "' is not a positive id");
        break;
    }
    case Type::boolean: {
        bool b;
        if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b)) fail("expected true or false");
        break;
    }
    case Type::hostname: {
        std::string h = scalar();
        bool ok = !h.empty() && h.size() <= 63 && h.front() != '-' && h.back() != '-';
        for (char c : h)
            ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-');
        if (!ok) fail("'" + h + "' is not a host name (letters, digits and '-', at most 63)");
        break;
    }
    case Type::cidr: {
        std::string v = scalar();
        if (v.empty()) break;
        auto slash = v.find('/');
        bool ok = slash != std::string::npos && valid_ipv4(v.substr(0, slash));
        if (ok) {
            std::string len = v.substr(slash + 1);
            ok = !len.empty() && len.size() <= 2 &&
                 len.find_first_not_of("0123456789") == std::string::npos && std::stoi(len) <= 32;
        }
        if (!ok) fail("'" + v + "' is not an IPv4 address with a prefix length, like 10.0.0.5/24");
        break;
    }
    case Type::ipv4: {
        std::string v = scalar();
        if (!v.empty() && !valid_ipv4(v)) fail("'" + v + "' is not an IPv4 address");
        break;
    }
    case Type::ipv4_list:
        if (!n.IsSequence()) fail("expected a list of IPv4 addresses, like [10.0.0.1]");
        for (const auto& i : n)
            if (!i.IsScalar() || !valid_ipv4(i.as<std::string>()))
                fail("'" + (i.IsScalar() ? i.as<std::string>() : std::string("?")) +
                     "' is not an IPv4 address");
        break;
    case Type::ssh_keys:
        if (!n.IsSequence()) fail("expected a list of public keys");
        for (const auto& i : n) {
            std::string key = i.IsScalar() ? i.as<std::string>() : "";
            if (auto problem = public_key_problem(key); !problem.empty())
                fail("'" + (i.IsScalar() ? key.substr(0, 40) : std::string("?")) + "' " + problem);
        }
        break;
    }
}

void walk(const YAML::Node& n, const std::string& prefix, const std::string& file) {
    auto at = [&](const YAML::Node& x, const std::string& key) {
        auto m = x.Mark();
        return fmt::format("{}:{}:{}: {}", file, m.line + 1, m.column + 1, key);
    };
    if (!n.IsMap())
        throw Invalid{at(n, prefix.empty() ? "configuration" : prefix) + ": expected a mapping"};
    auto allowed = children(prefix);
    for (const auto& kv : n) {
        std::string name = kv.first.as<std::string>();
        std::string key = prefix.empty() ? name : prefix + "." + name;
        bool wildcard = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
        if (!wildcard && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
            std::string near = closest(name, allowed);
            throw Invalid{at(kv.first, key) + ": unknown key" +
                          (near.empty() ? std::string() : " (did you mean '" + near + "'?)")};
        }
        if (const KeySpec* spec = find_key(key)) {
            check_value(*spec, kv.second, at(kv.second, key));
            continue;
        }
        if (kv.second.IsNull()) continue; // "network:" with nothing under it
        walk(kv.second, key, file);
    }
}

} // namespace

const KeySpec* find_key(const std::string& dotted) {
    for (const auto& k : keys())
        if (matches(k.key, dotted)) return &k;
    return nullptr;
}

YAML::Node defaults() {
    YAML::Node d(YAML::NodeType::Map);
    for (const auto& k : keys())
        if (k.key.find('*') == std::string::npos) set(d, k.key, YAML::Load(k.default_yaml));
    return d;
}

Status validate(const YAML::Node& doc, const std::string& file) {
    try {
        if (!doc || doc.IsNull()) return {};
        walk(doc, "", file);
        return {};
    } catch (const Invalid& e) {
        return plain_error(e.message);
    } catch (const YAML::Exception& e) {
        return plain_error(
            fmt::format("{}:{}:{}: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
}

Result<YAML::Node> parse(const std::string& text, const std::string& file) {
    YAML::Node doc;
    try {
        doc = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        return plain_error(
            fmt::format("{}:{}:{}: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
    if (auto s = validate(doc, file); !s) return s.error();
    if (!doc || doc.IsNull()) return YAML::Node(YAML::NodeType::Map);
    return doc;
}

Result<YAML::Node> value_for(const std::string& key, const std::string& value) {
    const KeySpec* spec = find_key(key);
    if (!spec) {
        std::vector<std::string> names;
        for (const auto& k : keys())
            names.push_back(k.key);
        std::string near = closest(key, names);
        return plain_error("unknown key '" + key + "'" +
                           (near.empty() ? "" : " (did you mean '" + near + "'?)"));
    }
    try {
        // (yaml-cpp's Node::operator= writes through to the node a handle refers to, so each
        // candidate value is a fresh Node, never one assigned over another.)
        YAML::Node parsed = value.empty() ? YAML::Node() : YAML::Load(value);
        std::string text = parsed.IsScalar() ? parsed.as<std::string>() : "";
        bool list_key = spec->type == Type::ipv4_list || spec->type == Type::ssh_keys;
        if (list_key && (parsed.IsScalar() || parsed.IsNull())) {
            // A bare word for a list key is a list of one; nothing is an empty list.
            YAML::Node list(YAML::NodeType::Sequence);
            if (!text.empty()) list.push_back(YAML::Node(value));
            check_value(*spec, list, key);
            return list;
        }
        if (parsed.IsNull()) {
            YAML::Node empty(std::string{});
            check_value(*spec, empty, key);
            return empty;
        }
        check_value(*spec, parsed, key);
        return parsed;
    } catch (const Invalid& e) {
        return plain_error(e.message);
    } catch (const YAML::Exception& e) {
        return plain_error(key + ": " + e.msg);
    }
}

std::optional<YAML::Node> get(const YAML::Node& doc, const std::string& key) {
    YAML::Node n = YAML::Clone(doc);
    for (const auto& part : split_key(key)) {
        if (!n.IsMap() || !n[part]) return std::nullopt;
        n = n[part];
    }
    return n;
}

void set(YAML::Node& doc, const std::string& key, const YAML::Node& value) {
    auto parts = split_key(key);
    // yaml-cpp nodes are handles: walk with fresh handles, never by assigning to one.
    std::vector<YAML::Node> path{doc};
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
        YAML::Node next = path.back()[parts[i]];
        if (!next.IsMap()) {
            path.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
            next = path.back()[parts[i]];
        }
        path.push_back(next);
    }
    path.back()[parts.back()] = YAML::Clone(value);
}

YAML::Node merged(const YAML::Node& base, const YAML::Node& over) {
    YAML::Node out = YAML::Clone(base);
    if (!over || !over.IsMap()) return out;
    for (const auto& kv : over) {
        std::string k = kv.first.as<std::string>();
        if (kv.second.IsMap() && out[k] && out[k].IsMap())
            out[k] = merged(out[k], kv.second);
        else
            out[k] = YAML::Clone(kv.second);
    }
    return out;
}

std::string to_yaml(const YAML::Node& doc) {
    YAML::Emitter e;
    e << doc;
    return std::string(e.c_str()) + "\n";
}

std::string to_text(const YAML::Node& v) {
    if (v.IsScalar()) return v.as<std::string>();
    if (v.IsSequence()) {
        std::vector<std::string> parts;
        bool spaced = false;
        for (const auto& i : v) {
            parts.push_back(i.IsScalar() ? i.as<std::string>() : to_yaml(i));
            spaced = spaced || parts.back().find_first_of(" \t") != std::string::npos;
        }
        return join(parts, spaced ? "\n" : " ");
    }
    std::string y = to_yaml(v);
    while (!y.empty() && y.back() == '\n')
        y.pop_back();
    return y;
}

Loaded load(const std::string& overlay_path, const std::string& last_good_path,
            const std::map<std::string, std::string>& overrides) {
    Loaded out;
    out.overlay = YAML::Node(YAML::NodeType::Map);
    out.source = "defaults";
    std::string text;
    struct stat st {};
    if (::stat(overlay_path.c_str(), &st) == 0) {
        if (!read_file(overlay_path.c_str(), text)) {
            out.error = sys_error("read " + overlay_path).str();
        } else if (auto doc = parse(text, overlay_path)) {
            out.overlay = *doc;
            out.source = "overlay";
        } else {
            out.error = doc.error().str();
        }
        if (!out.error.empty() && read_file(last_good_path.c_str(), text)) {
            if (auto good = parse(text, last_good_path)) {
                out.overlay = *good;
                out.source = "last good";
            }
        }
    }
    out.effective = merged(defaults(), out.overlay);
    for (const auto& [key, value] : overrides) {
        auto v = value_for(key, value);
        if (!v) {
            out.warnings.push_back("keel.config." + key + "=" + value + ": " + v.error().str());
            continue;
        }
        set(out.effective, key, *v);
    }
    return out;
}

} // namespace keel::config
