import Foundation

/// MIMServe's job store: jobs, metrics, checkpoints, datasets, events and evaluations, in one
/// SQLite file (`SQLiteStore`, the default: one machine, nothing to set up) or in PostgreSQL
/// (`PostgresStore`: several nodes share one queue). Every caller sees the same synchronous API
/// and the same guarantees; see `StoreBackend` for how the work is split.
///
/// Calls block their thread until the database answers. They are made from trainer slots and
/// NIO's blocking thread pool, never from an event loop or Swift's cooperative pool.
public final class Store: Sendable {
    public let location: DatabaseLocation
    public let migrations: MigrationSet
    let backend: any StoreBackend

    /// Opens (creating if needed) the database at `location` and applies pending migrations, or
    /// refuses a database that holds migrations `migrations` does not know.
    public init(_ location: DatabaseLocation, migrations: MigrationSet) throws(StoreError) {
        self.location = location
        self.migrations = migrations
        switch location {
        case .sqlite(let path): backend = try SQLiteStore(path: path, migrations: migrations)
        case .postgres(let pg): backend = try PostgresStore(pg, migrations: migrations)
        }
    }

    /// Opens the SQLite file at `path` (see `init(_:migrations:)`).
    public convenience init(path: String, migrations: MigrationSet) throws(StoreError) {
        try self.init(.sqlite(path: path), migrations: migrations)
    }

    /// True when other processes may train from this database too (PostgreSQL); a SQLite file
    /// is this process's alone (the data dir's lock).
    public var isShared: Bool {
        if case .postgres = location { return true }
        return false
    }

    /// The SQLite file's path, or the PostgreSQL location without its password.
    public var path: String {
        switch location {
        case .sqlite(let path): path
        case .postgres(let pg): pg.description
        }
    }

    /// Names of the migrations recorded in the database, in order.
    public func appliedMigrations() throws(StoreError) -> [String] {
        try backend.appliedMigrations()
    }

    /// True when a real write commits (readiness: disk not full, file not read-only, server up).
    public func probeWrite() -> Bool {
        backend.probeWrite()
    }

    /// "ok" when the database is sound: SQLite's `PRAGMA integrity_check`; for PostgreSQL, a
    /// round trip that reads the store's own tables (the server checks its pages itself).
    public func integrityCheck() throws(StoreError) -> String {
        try backend.integrityCheck()
    }

    static func newJobID() -> String {
        var g = SystemRandomNumberGenerator()
        let n = g.next() as UInt64
        let hex = String(n, radix: 16)
        return "j" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The JSON of an event's `data_json`, keys sorted so equal events store equal text.
    static func eventJSON(_ data: [String: Any]) throws(StoreError) -> String {
        do {
            return String(decoding: try JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]), as: UTF8.self)
        } catch {
            throw .database("cannot encode an event: \(error.localizedDescription)")
        }
    }
}
