import Foundation

/// One benchmark result: printed as a JSON line (stdout) and a table row (stderr).
/// Keys are shared by every command (docs/architecture.md#benchmarks) so scripts can read any case.
struct Record {
    var fields: [(String, Any)] = []

    subscript(key: String) -> Any? {
        get { fields.first { $0.0 == key }?.1 }
        set {
            fields.removeAll { $0.0 == key }
            if let newValue { fields.append((key, newValue)) }
        }
    }

    var json: String {
        let parts = fields.map { key, value -> String in
            let v: String
            switch value {
            case let d as Double: v = d.isFinite ? String(format: "%.4g", d) : "null"
            case let f as Float: v = String(format: "%.4g", Double(f))
            case let i as Int: v = String(i)
            case let a as [Float]: v = "[" + a.map { $0.isFinite ? String(format: "%.6g", Double($0)) : "null" }.joined(separator: ",") + "]"
            case let s as String: v = "\"\(s)\""
            default: v = "\"\(value)\""
            }
            return "\"\(key)\":\(v)"
        }
        return "{" + parts.joined(separator: ",") + "}"
    }
}

enum Report {
    static func emit(_ r: Record) {
        FileHandle.standardOutput.write((r.json + "\n").data(using: .utf8)!)
    }

    /// Prints the rows' chosen columns as an aligned table on stderr.
    static func table(_ rows: [Record], columns: [String]) {
        func cell(_ v: Any?) -> String {
            switch v {
            case let d as Double: return String(format: d >= 100 ? "%.1f" : "%.3g", d)
            case let i as Int: return String(i)
            case let s as String: return s
            case nil: return "–"
            default: return "\(v!)"
            }
        }
        let cells = rows.map { r in columns.map { cell(r[$0]) } }
        let widths = columns.indices.map { i in max(columns[i].count, cells.map { $0[i].count }.max() ?? 0) }
        var out = ""
        func line(_ items: [String]) {
            out += zip(items, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ") + "\n"
        }
        line(columns)
        line(widths.map { String(repeating: "-", count: $0) })
        for c in cells { line(c) }
        FileHandle.standardError.write(out.data(using: .utf8)!)
    }

    /// Peak resident set size of this process in MB (VmHWM).
    static func peakRSSMB() -> Double { statusMB("VmHWM:") }

    /// Resident memory now.
    static func residentMB() -> Double { statusMB("VmRSS:") }

    private static func statusMB(_ key: String) -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return .nan }
        for line in s.split(separator: "\n") where line.hasPrefix(key) {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? .nan
            return kb / 1024
        }
        return .nan
    }
}

/// Wall-clock seconds of `body`.
func timed(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}
