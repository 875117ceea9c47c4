import Foundation
import GRDB

/// The store in one SQLite file, through GRDB.
///
/// A `DatabasePool` in WAL mode: one writer at a time, readers never wait for it, so reading a
/// job's history while it trains never slows the trainer. `synchronous = NORMAL` keeps every
/// committed transaction across a process crash (WAL); only a power cut can lose the last ones.
/// Writes are serialised by SQLite itself, so a transaction that reads and then writes sees no
/// other writer in between.
final class SQLiteStore: StoreBackend {
    let pool: DatabasePool
    let migrations: MigrationSet

    init(path: String, migrations: MigrationSet) throws(StoreError) {
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
            throw .database("cannot open \(path): \(Self.describe(error))")
        }
        let migrator = migrations.migrator
        let applied: Set<String>
        do {
            applied = try pool.read { try migrator.appliedIdentifiers($0) }
        } catch {
            throw .database("cannot read applied migrations: \(Self.describe(error))")
        }
        let unknown = migrations.unknown(among: applied)
        if !unknown.isEmpty { throw .newerSchema(unknown) }
        do {
            try migrator.migrate(pool)
        } catch {
            throw .database("migration failed: \(Self.describe(error))")
        }
    }

    func appliedMigrations() throws(StoreError) -> [String] {
        let migrator = migrations.migrator
        return try read { try migrator.appliedMigrations($0) }
    }

    func probeWrite() -> Bool {
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

    /// This process alone writes to the file (the data dir's lock): nothing to watch.
    func watchChanges(_ onChange: @escaping @Sendable (StoreChange) -> Void) -> StoreWatch? { nil }

    func integrityCheck() throws(StoreError) -> String {
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
        return .database(describe(error))
    }

    /// SQLite's own message and code, without the statement GRDB appends (errors reach clients).
    static func describe(_ error: any Error) -> String {
        guard let e = error as? DatabaseError else { return String(describing: error) }
        return "SQLite error \(e.extendedResultCode.rawValue): \(e.message ?? "unknown")"
    }

    static func timestamp(_ date: Date = Date()) -> String {
        date.databaseValue.storage.value as? String ?? "\(date)"
    }
}
