#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Command-line parsing the way Dragonfly (gflags/abseil) does it.
///
/// Syntax: `--name=value`, `--name value`, `-name=value`; booleans also as `--flag`, `--noflag`
/// and `--flag=true|false|1|0|yes|no`. `--flagfile=PATH` reads one flag per line (same syntax,
/// `#` comments and blank lines ignored). Precedence, lowest to highest: defaults,
/// `DFLY_<flag>` environment variables (`DFLY_port`, or upper-case `DFLY_PORT`), flagfile
/// contents, command-line flags.
public enum ConfigParser {
    /// `arguments` is argv without the program name; `environment` the process environment.
    public static func parse(arguments: [String], environment: [String: String]) throws(ConfigError) -> ConfigAction {
        for argument in arguments {
            if argument == "--" { break }
            switch argument {
            case "--help", "-help", "-h", "--helpfull", "-helpfull": return .help(helpText())
            case "--version", "-version": return .version(ServerConfig.versionString)
            default: continue
            }
        }

        let commandLine = try tokenize(arguments)
        var config = ServerConfig()

        // 1. Environment.
        for flag in ConfigFlagSpec.all {
            guard let text = environmentValue(flag.name, environment) else { continue }
            flag.set(&config, try flag.parse(text))
        }

        // 2. Flagfiles: those named on the command line, else DFLY_flagfile.
        var flagfiles = commandLine.filter { $0.name == "flagfile" }.map { $0.value }
        if flagfiles.isEmpty, let path = environmentValue("flagfile", environment), !path.isEmpty {
            flagfiles = [path]
        }
        for path in flagfiles {
            try applyFlagfile(path, to: &config, depth: 0)
            config.flagfile = path
        }

        // 3. The command line.
        for setting in commandLine where setting.name != "flagfile" {
            try apply(setting, to: &config)
        }

        try config.validate()
        return .run(config)
    }

    /// Every flag, its default and a one-line description.
    public static func helpText() -> String {
        let defaults = ServerConfig()
        var lines = [
            "\(ServerConfig.versionString): a Redis-compatible multi-threaded in-memory server.",
            "",
            "Usage: damselfly [--flag=value ...]",
            "",
            "Flags may be written --name=value, --name value or -name=value; booleans as --name, --noname",
            "or --name=true|false|yes|no|1|0. Each flag can also come from a DFLY_<name> environment",
            "variable (e.g. DFLY_port=7000); precedence: defaults < environment < --flagfile < command line.",
            "",
            "Flags:",
        ]
        var entries: [(String, String)] = ConfigFlagSpec.all.map { flag in
            let shown = flag.render(defaults)
            let value = shown.isEmpty ? "\"\"" : shown
            return ("--\(flag.name)=\(flag.placeholder)", "\(flag.help) (default: \(value))")
        }
        entries.append(("--flagfile=<path>", "Read flags from this file, one per line; '#' starts a comment. (default: \"\")"))
        entries.append(("--help", "Print this help and exit."))
        entries.append(("--version", "Print the version and exit."))
        for (usage, description) in entries {
            lines.append("  \(usage)")
            lines.append("      \(description)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Internals

    /// One `name[=value]` occurrence after the `--`/`-` prefix has been stripped; `value` is
    /// already resolved for `--noflag` ("false") and bare booleans ("true").
    struct Setting: Equatable {
        let name: String
        let value: String
    }

    static func environmentValue(_ name: String, _ environment: [String: String]) -> String? {
        environment["DFLY_" + name] ?? environment["DFLY_" + name.uppercased()]
    }

    /// Splits argv into settings; a non-boolean flag without `=` takes the next argument.
    static func tokenize(_ arguments: [String]) throws(ConfigError) -> [Setting] {
        var settings: [Setting] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" { break }
            guard let (name, inlineValue) = splitFlag(argument) else {
                throw .unknownFlag(argument)
            }
            if let inlineValue {
                settings.append(try resolve(name, inlineValue))
                continue
            }
            if let setting = try resolveBare(name) {
                settings.append(setting)
                continue
            }
            // A value-taking flag written `--name value`.
            guard index < arguments.count, !arguments[index].hasPrefix("--") else {
                throw .missingValue(name)
            }
            settings.append(try resolve(name, arguments[index]))
            index += 1
        }
        return settings
    }

    /// `--name=value` / `-name=value` / `--name` → (name, value?); nil if not a flag at all.
    static func splitFlag(_ argument: String) -> (String, String?)? {
        var body = Substring(argument)
        if body.hasPrefix("--") {
            body = body.dropFirst(2)
        } else if body.hasPrefix("-") {
            body = body.dropFirst()
        } else {
            return nil
        }
        guard !body.isEmpty, !body.hasPrefix("=") else { return nil }
        if let equals = body.firstIndex(of: "=") {
            return (normalizeFlagName(body[..<equals]), String(body[body.index(after: equals)...]))
        }
        return (normalizeFlagName(body), nil)
    }

    /// Flag names are written with underscores; dashes are accepted as a convenience.
    static func normalizeFlagName(_ name: Substring) -> String {
        String(name).replacingDashes()
    }

    /// A flag written with an explicit value.
    static func resolve(_ name: String, _ value: String) throws(ConfigError) -> Setting {
        if name == "flagfile" {
            guard !value.isEmpty else { throw .missingValue(name) }
            return Setting(name: name, value: value)
        }
        guard ConfigFlagSpec.byName[name] != nil else { throw .unknownFlag(name) }
        return Setting(name: name, value: value)
    }

    /// A flag written without a value: a boolean (`--flag`, `--noflag`), or nil when the flag
    /// takes a value from the next argument.
    static func resolveBare(_ name: String) throws(ConfigError) -> Setting? {
        if name == "flagfile" { return nil }
        if let flag = ConfigFlagSpec.byName[name] {
            return flag.isBool ? Setting(name: name, value: "true") : nil
        }
        if name.hasPrefix("no"), let flag = ConfigFlagSpec.byName[String(name.dropFirst(2))], flag.isBool {
            return Setting(name: flag.name, value: "false")
        }
        throw .unknownFlag(name)
    }

    static func apply(_ setting: Setting, to config: inout ServerConfig) throws(ConfigError) {
        guard let flag = ConfigFlagSpec.byName[setting.name] else { throw .unknownFlag(setting.name) }
        flag.set(&config, try flag.parse(setting.value))
    }

    /// Applies a flagfile's lines in order; nested `--flagfile` lines are read in place.
    static func applyFlagfile(_ path: String, to config: inout ServerConfig, depth: Int) throws(ConfigError) {
        guard depth < 8, let text = readConfigTextFile(path) else { throw .unreadableFile(path) }
        for setting in try parseFlagfileLines(text) {
            if setting.name == "flagfile" {
                try applyFlagfile(setting.value, to: &config, depth: depth + 1)
            } else {
                try apply(setting, to: &config)
            }
        }
    }

    /// One flag per line: `--name=value`, `--name value`, `--flag`, `--noflag`; whitespace
    /// trimmed, blank lines and `#` comments skipped. The value is the rest of the line.
    static func parseFlagfileLines(_ text: String) throws(ConfigError) -> [Setting] {
        var settings: [Setting] = []
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = trimConfigWhitespace(rawLine)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var flagPart = line
            var spacedValue: String? = nil
            if let space = line.firstIndex(where: { $0 == " " || $0 == "\t" }),
               line[..<space].firstIndex(of: "=") == nil {
                flagPart = String(line[..<space])
                spacedValue = trimConfigWhitespace(line[space...])
            }
            guard let (name, inlineValue) = splitFlag(flagPart) else { throw .unknownFlag(line) }
            if let value = inlineValue ?? spacedValue {
                settings.append(try resolve(name, value))
            } else if let setting = try resolveBare(name) {
                settings.append(setting)
            } else {
                throw .missingValue(name)
            }
        }
        return settings
    }
}

extension String {
    fileprivate func replacingDashes() -> String {
        String(map { $0 == "-" ? "_" : $0 })
    }
}

func trimConfigWhitespace<S: StringProtocol>(_ text: S) -> String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
    guard let first = text.firstIndex(where: { !isSpace($0) }) else { return "" }
    let last = text.lastIndex(where: { !isSpace($0) })!
    return String(text[first...last])
}

/// Reads a whole text file with the C library; nil when it can't be opened or read.
func readConfigTextFile(_ path: String) -> String? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if count > 0 { bytes.append(contentsOf: buffer[0..<count]) }
        if count < buffer.count {
            if ferror(file) != 0 { return nil }
            break
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
