import Foundation

/// Where the store keeps its tables: `--database` / `MIMSERVE_DATABASE`.
///
/// - `sqlite:PATH`: one SQLite file (one machine, nothing to set up).
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMS]` (or `postgresql://`): a
///   PostgreSQL server, which several nodes can share. Parameters: `host=/dir` connects through
///   the unix socket in `/dir` instead of TCP (HOST may then be empty:
///   `postgres://me@/mimserve?host=/run/postgresql`); `schema=NAME` keeps the tables in that schema
///   (created when missing; default `public`); `sslmode=disable|prefer|require` (default
///   `prefer` over TCP); `pool=N` caps the open connections (default 8). Percent-escapes are
///   decoded in the user, password and database.
///
/// The password is never printed: `description` leaves it out, and so does every error.
public enum DatabaseLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    public var dialect: MigrationSet.Dialect {
        switch self {
        case .sqlite: .sqlite
        case .postgres: .postgres
        }
    }

    /// Reads a `--database` value. Errors name what is wrong, never the password.
    public init(parsing text: String) throws(StoreError) {
        if text.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }  // sqlite:///abs/path
            guard !path.isEmpty else { throw .badLocation("sqlite: needs a file path, as in sqlite:./data/mimserve.sqlite") }
            self = .sqlite(path: path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(try PostgresLocation(parsing: text))
        } else {
            throw .badLocation("must start with sqlite: or postgres:// (got '\(text.prefix { $0 != ":" })…')")
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let pg): pg.description
        }
    }
}

/// A PostgreSQL server, database and schema (see `DatabaseLocation`).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The folder of the server's socket; the file in it is `.s.PGSQL.<port>`.
        case unixSocket(directory: String, port: Int)
    }

    public enum TLSMode: String, Sendable, Equatable {
        case disable, prefer, require
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var schema: String?
    public var tls: TLSMode
    public var maxConnections: Int

    public init(endpoint: Endpoint, user: String, password: String? = nil, database: String, schema: String? = nil,
                tls: TLSMode = .prefer, maxConnections: Int = 8) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.schema = schema
        self.tls = tls
        self.maxConnections = maxConnections
    }

    init(parsing text: String) throws(StoreError) {
        // The password may hold characters URLComponents refuses; take the authority apart by hand.
        let rest = text.drop { $0 != "/" }.dropFirst(2)
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var tail = rest[authorityEnd...]
        guard let at = authority.lastIndex(of: "@") else {
            throw .badLocation("postgres:// needs a user, as in postgres://user:password@host:5432/database")
        }
        let credentials = authority[..<at], hostPort = authority[authority.index(after: at)...]
        let userPart = credentials.prefix { $0 != ":" }
        let passwordPart = credentials.dropFirst(userPart.count + 1)
        guard let user = String(userPart).removingPercentEncoding, !user.isEmpty else { throw .badLocation("postgres:// needs a user name") }
        let password = credentials.contains(":") ? String(passwordPart).removingPercentEncoding : nil

        var host = String(hostPort), port = 5432
        if let colon = hostPort.lastIndex(of: ":"), !hostPort.hasSuffix("]") {
            guard let p = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(p) else {
                throw .badLocation("postgres:// port must be a number in 1…65535")
            }
            port = p
            host = String(hostPort[..<colon])
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }

        var database = ""
        if tail.hasPrefix("/") {
            let end = tail.firstIndex(of: "?") ?? tail.endIndex
            database = String(tail[tail.index(after: tail.startIndex)..<end]).removingPercentEncoding ?? ""
            tail = tail[end...]
        }
        guard !database.isEmpty else { throw .badLocation("postgres:// needs a database name, as in postgres://user@host/mimserve") }

        var socketDirectory: String?, schema: String?, tls = TLSMode.prefer, pool = 8
        for pair in tail.dropFirst().split(separator: "&") where !pair.isEmpty {
            let key = pair.prefix { $0 != "=" }
            let value = String(pair.dropFirst(key.count + 1)).removingPercentEncoding ?? ""
            switch key {
            case "host":
                guard value.hasPrefix("/") else { throw .badLocation("postgres:// host= takes the folder of a unix socket, starting with /") }
                socketDirectory = value
            case "schema":
                guard let first = value.first, first.isLetter || first == "_",
                      value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }), value.count <= 63 else {
                    throw .badLocation("postgres:// schema= takes a name of letters, digits and _ (at most 63)")
                }
                schema = value.lowercased()
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else { throw .badLocation("postgres:// sslmode= takes disable, prefer or require") }
                tls = mode
            case "pool":
                guard let n = Int(value), (1...100).contains(n) else { throw .badLocation("postgres:// pool= takes a number in 1…100") }
                pool = n
            default:
                throw .badLocation("postgres:// has no parameter '\(key)' (known: host, schema, sslmode, pool)")
            }
        }
        let endpoint: Endpoint
        if let socketDirectory {
            endpoint = .unixSocket(directory: socketDirectory, port: port)
        } else {
            guard !host.isEmpty else { throw .badLocation("postgres:// needs a host, or host=/socket/folder") }
            endpoint = .tcp(host: host, port: port)
        }
        self.init(endpoint: endpoint, user: user, password: password, database: database, schema: schema, tls: tls,
                  maxConnections: pool)
    }

    /// The location as a URL with the password left out.
    public var description: String {
        let user = self.user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? self.user
        var params: [String] = []
        let authority: String
        switch endpoint {
        case .tcp(let host, let port): authority = "\(host.contains(":") ? "[\(host)]" : host):\(port)"
        case .unixSocket(let dir, let port):
            authority = ":\(port)"
            params.append("host=\(dir)")
        }
        if let schema { params.append("schema=\(schema)") }
        return "postgres://\(user)\(password == nil ? "" : ":***")@\(authority)/\(database)" + (params.isEmpty ? "" : "?" + params.joined(separator: "&"))
    }
}
