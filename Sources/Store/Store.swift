import Foundation
import GRDB

/// MIMServe's one SQLite file: jobs, metrics, checkpoints, datasets, events and evaluations.
///
/// A `DatabasePool` in WAL mode: one writer at a time, readers never wait for it, so reading a
/// job's history while it trains never slows the trainer. `synchronous = NORMAL` keeps every
/// committed transaction across a process crash (WAL); only a power cut can lose the last ones.
public final class Store: Sendable {
    public let path: String
    let pool: DatabasePool
    public let migrations: MigrationSet

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    public init(path: String, migrations: MigrationSet) throws(StoreError) {
        self.path = path
        self.migrations = migrations
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw .database("cannot open \(path): \(error)")
        }
        let migrator = migrations.migrator
        let known = Set(migrations.files.map(\.name))
        let applied: Set<String>
        do {
            applied = try pool.read { try migrator.appliedIdentifiers($0) }
        } catch {
            throw .database("cannot read applied migrations: \(error)")
        }
        let unknown = applied.subtracting(known)
        if !unknown.isEmpty { throw .newerSchema(unknown.sorted()) }
        do {
            try migrator.migrate(pool)
        } catch {
            throw .database("migration failed: \(error)")
        }
    }

    /// Names of the migrations recorded in the database, in order.
    public func appliedMigrations() throws(StoreError) -> [String] {
        let migrator = migrations.migrator
        let applied = try read { try migrator.appliedMigrations($0) }
        return applied
    }

    /// True when a real write commits (readiness: disk not full, file not read-only).
    public func probeWrite() -> Bool {
        do {
            try pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO instance (key, value) VALUES ('last_write_probe', ?)",
                               arguments: [Self.timestamp()])
            }
            return true
        } catch {
            return false
        }
    }

    /// `PRAGMA integrity_check` ("ok" when the file is sound).
    public func integrityCheck() throws(StoreError) -> String {
        try read { try String.fetchOne($0, sql: "PRAGMA integrity_check") ?? "no result" }
    }

    // MARK: - Plumbing

    func read<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do { return try pool.read(body) } catch { throw Self.wrap(error) }
    }

    func write<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do { return try pool.write(body) } catch { throw Self.wrap(error) }
    }

    static func wrap(_ error: any Error) -> StoreError {
        if let e = error as? StoreError { return e }
        return .database(String(describing: error))
    }

    static func timestamp(_ date: Date = Date()) -> String {
        date.databaseValue.storage.value as? String ?? "\(date)"
    }
}
