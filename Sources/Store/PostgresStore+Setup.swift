import Foundation
import NIOSSL
import PostgresNIO

extension PostgresStore {
    /// Parameters every connection starts with: the schema (when the location names one) and a
    /// name the server's `pg_stat_activity` shows.
    static func startupParameters(_ location: PostgresLocation) -> [(String, String)] {
        var parameters = [("application_name", "mimserve")]
        if let schema = location.schema { parameters.append(("search_path", schema)) }
        return parameters
    }

    static func tlsContext(_ location: PostgresLocation) throws(StoreError) -> NIOSSLContext? {
        guard location.tls != .disable, case .tcp = location.endpoint else { return nil }
        do {
            return try NIOSSLContext(configuration: .makeClientConfiguration())
        } catch {
            throw .database("cannot set up TLS: \(error)")
        }
    }

    static func clientConfiguration(_ location: PostgresLocation, tls: NIOSSLContext?) -> PostgresClient.Configuration {
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
        config.options.additionalStartupParameters = startupParameters(location)
        return config
    }

    static func connectionConfiguration(_ location: PostgresLocation, tls: NIOSSLContext?) -> PostgresConnection.Configuration {
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
        config.options.additionalStartupParameters = startupParameters(location)
        return config
    }

    /// Creates the schema and the migrations table when missing, refuses a database with
    /// migrations this build does not know, then applies the pending files in order, each in its
    /// own transaction with its record. An advisory lock makes nodes that start together take
    /// turns; each re-reads what is applied once it holds the lock.
    static func migrate(_ location: PostgresLocation, tls: NIOSSLContext?, migrations: MigrationSet) throws(StoreError) {
        let config = connectionConfiguration(location, tls: tls)
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
