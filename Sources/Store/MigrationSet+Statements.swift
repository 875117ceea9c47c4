import Foundation

extension MigrationSet.File {
    /// The file's SQL statements, one by one: PostgreSQL's extended protocol (the only one
    /// postgres-nio speaks) runs one statement per query. Splits at semicolons outside comments
    /// (`--`, `/* */`), quoted strings and identifiers, and dollar-quoted bodies (`$$ … $$`,
    /// `$tag$ … $tag$`), so a function body in a later migration stays whole.
    var statements: [String] {
        let chars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var i = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty && !text.allSatisfy({ $0 == ";" }) { statements.append(text) }
            current = String.UnicodeScalarView()
        }
        func copy(until end: [Unicode.Scalar], from start: Int) -> Int {
            var j = start
            while j < chars.count {
                if j + end.count <= chars.count && Array(chars[j..<j + end.count]) == end {
                    current.append(contentsOf: end)
                    return j + end.count
                }
                current.append(chars[j])
                j += 1
            }
            return j
        }
        while i < chars.count {
            let c = chars[i], next = i + 1 < chars.count ? chars[i + 1] : " "
            switch c {
            case "-" where next == "-":
                // A comment is dropped, not kept: it may hold a semicolon and means nothing to the server.
                while i < chars.count && chars[i] != "\n" { i += 1 }
            case "/" where next == "*":
                i += 2
                while i + 1 < chars.count && !(chars[i] == "*" && chars[i + 1] == "/") { i += 1 }
                i += 2
            case "'", "\"":
                current.append(c)
                i = copy(until: [c], from: i + 1)
            case "$":
                // A dollar quote's tag: $$ or $name$ (letters, digits, _), else a parameter like $1.
                var j = i + 1
                while j < chars.count && (chars[j].properties.isAlphabetic || chars[j] == "_" || ("0"..."9").contains(chars[j])) { j += 1 }
                if j < chars.count && chars[j] == "$" && !(i + 1 < j && ("0"..."9").contains(chars[i + 1])) {
                    let tag = Array(chars[i...j])
                    current.append(contentsOf: tag)
                    i = copy(until: tag, from: j + 1)
                } else {
                    current.append(c)
                    i += 1
                }
            case ";":
                flush()
                i += 1
            default:
                current.append(c)
                i += 1
            }
        }
        flush()
        return statements
    }
}
