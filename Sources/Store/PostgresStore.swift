import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO

/// The store in a PostgreSQL database, through postgres-nio: what several nodes share when one
/// machine is not enough.
///
/// Every operation is one transaction on a connection leased from a bounded pool
/// (`PostgresClient`, `pool=` in the location). Where SQLite serialises writers by itself, this
/// backend locks what each transaction depends on: the job's row (`FOR UPDATE`) before a state
/// change or an event, the queue (`FOR UPDATE SKIP LOCKED`) for a claim, and a transaction-level
/// advisory lock around submissions, so the queue limit and idempotency keys hold across nodes.
final class PostgresStore: StoreBackend {
    let location: PostgresLocation
    let migrations: MigrationSet
    let client: PostgresClient
    private let runner: Task<Void, Never>
    /// This store's connections' `application_name`: `mimserve/` and 8 random hex digits. It
    /// signs the change notifications this store sends, so its own listener skips them.
    let applicationName: String
    let tls: NIOSSLContext?

    /// postgres-nio logs queries at debug level; the store reports failures through its errors.
    static let logger: Logger = {
        var logger = Logger(label: "mimserve.postgres")
        logger.logLevel = .error
        return logger
    }()

    /// Keys of `pg_advisory_xact_lock`: one per kind of work that must not interleave.
    enum AdvisoryLock: Int64 {
        case migrations = 0x6d69_6d00_0001
        case submissions = 0x6d69_6d00_0002
    }

    init(_ location: PostgresLocation, migrations: MigrationSet) throws(StoreError) {
        self.location = location
        self.migrations = migrations
        let tls = try Self.tlsContext(location)
        self.tls = tls
        applicationName = "mimserve/" + String(format: "%08x", UInt32.random(in: .min ... .max))
        // Migrations first, on a connection of their own: a server that cannot be reached, a
        // refused password or a missing database fails here at once with the server's reason,
        // where the pool would keep retrying.
        try Self.migrate(location, tls: tls, migrations: migrations)
        let client = PostgresClient(configuration: Self.clientConfiguration(location, tls: tls, applicationName: applicationName),
                                    eventLoopGroup: PostgresBlocking.group, backgroundLogger: Self.logger)
        self.client = client
        runner = Task(executorPreference: PostgresBlocking.executor) { await client.run() }
    }

    deinit {
        runner.cancel()
    }

    func appliedMigrations() throws(StoreError) -> [String] {
        try read { conn in
            try await conn.rows("SELECT name FROM mimserve_migrations ORDER BY name").map { try $0.decode(String.self) }
        }
    }

    func probeWrite() -> Bool {
        do {
            try transaction { conn in
                _ = try await conn.rows("""
                    INSERT INTO instance (key, value) VALUES ('last_write_probe', \(Date().formatted(.iso8601)))
                    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
                    """)
            }
            return true
        } catch {
            return false
        }
    }

    /// PostgreSQL checks its own pages (checksums, WAL); what can go wrong from here is a schema
    /// that is not ours, so this reads every table the store uses.
    func integrityCheck() throws(StoreError) -> String {
        try read { conn in
            let tables = ["jobs", "metrics", "checkpoints", "job_events", "evaluations", "datasets", "instance"]
            for table in tables {
                try await conn.rows(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(table) LIMIT 1"))
            }
            return "ok"
        }
    }

    // MARK: - Plumbing

    /// `body` inside one read-write transaction, committed when it returns, rolled back when it throws.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws(StoreError) -> T {
        try onConnection { conn in try await Self.inTransaction(conn, begin: "BEGIN", body) }
    }

    /// `body` reading one consistent snapshot, for reads of several statements.
    func snapshot<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws(StoreError) -> T {
        try onConnection { conn in
            try await Self.inTransaction(conn, begin: "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", body)
        }
    }

    /// `body` outside a transaction: a single statement is atomic by itself.
    func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws(StoreError) -> T {
        try onConnection(body)
    }

    private func onConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws(StoreError) -> T {
        let client = self.client
        do {
            return try PostgresBlocking.wait { try await client.withConnection { conn in try await body(conn) } }
        } catch {
            throw Self.storeError(error)
        }
    }

    static func inTransaction<T: Sendable>(_ conn: PostgresConnection, begin: String,
                                           _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await conn.rows(PostgresQuery(unsafeSQL: begin))
        do {
            let result = try await body(conn)
            try await conn.rows("COMMIT")
            return result
        } catch {
            _ = try? await conn.rows("ROLLBACK")
            throw error
        }
    }

    /// The server's own words and SQLSTATE, or the connection's failure; never SQL text or the
    /// password (errors reach logs and, as 500s, clients).
    static func storeError(_ error: any Error) -> StoreError {
        if let e = error as? StoreError { return e }
        if let e = error as? PSQLError {
            if let message = e.serverInfo?[.message] {
                return .database("PostgreSQL: \(message) (SQLSTATE \(e.serverInfo?[.sqlState] ?? "?"))")
            }
            return .database("PostgreSQL: \(e.code)" + (e.underlying.map { ": \($0)" } ?? ""))
        }
        return .database("PostgreSQL: \(error)")
    }
}

extension PostgresConnection {
    /// Runs a statement and reads all its rows (a sequence left unread would hold the connection).
    @discardableResult
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await self.query(query, logger: PostgresStore.logger).collect()
    }
}
