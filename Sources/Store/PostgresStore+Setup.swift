import Foundation
import NIOSSL
import PostgresNIO

extension PostgresStore {
    /// Parameters every connection starts with: the schema (when the location names one) and a
    /// name the server's `pg_stat_activity` shows.
    /// Every connection names its store (`applicationName`: a node tells its own change
    /// notifications from other nodes', and operators see who is who in pg_stat_activity).
    /// `bounded` ones (all but the migrations') limit how long one statement, one lock wait or
    /// one idle open transaction may last, so a stuck node or query never holds the queue's
    /// locks for long.
    static func startupParameters(_ location: PostgresLocation, applicationName: String, bounded: Bool) -> [(String, String)] {
        var parameters = [("application_name", applicationName)]
        if bounded {
            parameters += [("statement_timeout", "\(Int(statementTimeoutSeconds * 1000))"),
                           ("lock_timeout", "\(Int(lockTimeoutSeconds * 1000))"),
                           ("idle_in_transaction_session_timeout", "\(Int(idleInTransactionTimeoutSeconds * 1000))")]
        }
        if let schema = location.schema { parameters.append(("search_path", schema)) }
        return parameters
    }

    /// Longer than any statement of ours takes (the slowest, a long job's deletion, takes well
    /// under a second), short enough that a runaway one gives its locks back.
    static let statementTimeoutSeconds = 60.0
    /// A job's row is locked only for the few statements of one transaction.
    static let lockTimeoutSeconds = 30.0
    /// Our transactions never wait for anything but the database between statements.
    static let idleInTransactionTimeoutSeconds = 30.0

    static func tlsContext(_ location: PostgresLocation) throws(StoreError) -> NIOSSLContext? {
        guard location.tls != .disable, case .tcp = location.endpoint else { return nil }
        do {
            return try NIOSSLContext(configuration: .makeClientConfiguration())
        } catch {
            throw .database("cannot set up TLS: \(error)")
        }
    }

    static func clientConfiguration(_ location: PostgresLocation, tls: NIOSSLContext?, applicationName: String) -> PostgresClient.Configuration {
        var config: PostgresClient.Configuration
        switch location.endpoint {
        case .tcp(let host, let port):
            let mode: PostgresClient.Configuration.TLS = switch location.tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
            config = .init(host: host, port: port, username: location.user, password: location.password,
                           database: location.database, tls: mode)
        case .unixSocket(let directory, let port):
            config = .init(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: location.user,
                           password: location.password, database: location.database)
        }
        config.options.maximumConnections = location.maxConnections
        config.options.additionalStartupParameters = startupParameters(location, applicationName: applicationName, bounded: true)
        return config
    }

    static func connectionConfiguration(_ location: PostgresLocation, tls: NIOSSLContext?, applicationName: String,
                                        bounded: Bool) -> PostgresConnection.Configuration {
        var config: PostgresConnection.Configuration
        switch location.endpoint {
        case .tcp(let host, let port):
            let mode: PostgresConnection.Configuration.TLS = switch (location.tls, tls) {
            case (.prefer, let context?): .prefer(context)
            case (.require, let context?): .require(context)
            default: .disable
            }
            config = .init(host: host, port: port, username: location.user, password: location.password,
                           database: location.database, tls: mode)
        case .unixSocket(let directory, let port):
            config = .init(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: location.user,
                           password: location.password, database: location.database)
        }
        config.options.additionalStartupParameters = startupParameters(location, applicationName: applicationName, bounded: bounded)
        return config
    }

    /// Creates the schema and the migrations table when missing, refuses a database with
    /// migrations this build does not know, then applies the pending files in order, each in its
    /// own transaction with its record. An advisory lock makes nodes that start together take
    /// turns; each re-reads what is applied once it holds the lock.
    static func migrate(_ location: PostgresLocation, tls: NIOSSLContext?, migrations: MigrationSet) throws(StoreError) {
        // Unbounded: a migration may rewrite a large table, and waits for another node's.
        let config = connectionConfiguration(location, tls: tls, applicationName: "mimserve-migrate", bounded: false)
        let lock = AdvisoryLock.migrations.rawValue
        do {
            try PostgresBlocking.wait {
                let conn = try await PostgresConnection.connect(on: PostgresBlocking.group.next(), configuration: config,
                                                                id: 0, logger: logger).get()
                do {
                    try await inTransaction(conn, begin: "BEGIN") { conn in
                        try await conn.rows("SELECT pg_advisory_xact_lock(\(lock))")
                        if let schema = location.schema {
                            try await conn.rows(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"))
                        }
                        try await conn.rows("""
                            CREATE TABLE IF NOT EXISTS mimserve_migrations (
                                name       TEXT PRIMARY KEY,
                                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
                            """)
                    }
                    for file in migrations.files {
                        try await inTransaction(conn, begin: "BEGIN") { conn in
                            try await conn.rows("SELECT pg_advisory_xact_lock(\(lock))")
                            let applied = try await conn.rows("SELECT name FROM mimserve_migrations").map { try $0.decode(String.self) }
                            let unknown = migrations.unknown(among: applied)
                            if !unknown.isEmpty { throw StoreError.newerSchema(unknown) }
                            guard !applied.contains(file.name) else { return }
                            for statement in file.statements {
                                try await conn.rows(PostgresQuery(unsafeSQL: statement))
                            }
                            try await conn.rows("INSERT INTO mimserve_migrations (name) VALUES (\(file.name))")
                        }
                    }
                } catch {
                    try? await conn.close()
                    throw error
                }
                try await conn.close()
            }
        } catch let error as StoreError {
            throw error
        } catch {
            let reason = storeError(error).description.replacingOccurrences(of: "database: ", with: "")
            throw .database("cannot open \(location): \(reason)")
        }
    }
}
