// swift-tools-version:6.0
import Foundation
import PackageDescription

// CPU tuning: MIMSERVE_TARGET_CPU=haswell builds our kernels for AVX2 + FMA, skylake-avx512
// for AVX-512 (F, CD, BW, DQ, VL: a subset of every AVX-512 Xeon's and EPYC's); the Makefile
// picks the widest the build machine has. Without it the build runs on any x86-64; a tuned
// binary dies on CPUs without those instructions, so images built for other machines leave it
// empty. MIMSERVE_VECTOR_WIDTH=512 lets loops vectorise 16 floats wide (LLVM keeps to 256 bits
// for Skylake-class targets unless told): twice the rate of our element-wise kernels.
let environment = ProcessInfo.processInfo.environment
let targetCPU = environment["MIMSERVE_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let vectorWidth = environment["MIMSERVE_VECTOR_WIDTH"].flatMap { $0.isEmpty ? nil : $0 }
let cpuFlags: [SwiftSetting] = targetCPU.map { cpu in
    [.unsafeFlags(["-target-cpu", cpu] + (vectorWidth.map { ["-Xcc", "-mprefer-vector-width=\($0)"] } ?? []))]
} ?? []

let package = Package(
    name: "MIMServe",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mimserve-bench", targets: ["mimserve-bench"]),
        .executable(name: "mimserve", targets: ["mimserve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // gettid, which the Glibc module lacks, for per-thread priorities.
        .target(name: "CThreads"),
        // bf16 GEMMs through oneDNN's matmul (Debian's libdnnl-dev); see Sources/CDNNL/cdnnl.c.
        .target(name: "CDNNL", linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]),
        // Register-blocked AVX-512 products for attention heads; see Sources/CKernels/head_gemm.c.
        .target(name: "CKernels"),
        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CThreads", "CDNNL", "CKernels"], swiftSettings: cpuFlags),
        .target(name: "NN", dependencies: ["TensorCore"], swiftSettings: cpuFlags),
        .target(name: "Optim", dependencies: ["TensorCore", "NN"], swiftSettings: cpuFlags),
        // Job requests, model and training configuration, presets, the cost model and the job
        // request's JSON Schema: every fact about a setting, once. No tensor code.
        .target(name: "Config"),
        .target(name: "Models", dependencies: ["Config", "TensorCore", "NN"], swiftSettings: cpuFlags),
        // Image data: libpng's simplified API and zlib through module maps; libjpeg inside a C
        // target of its own, because its errors longjmp and Swift must never be jumped over.
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),
        .target(name: "ImageData", dependencies: ["TensorCore", "CPNG", "CJPEG", "CZlib"], swiftSettings: cpuFlags),
        // Jobs, metrics, checkpoints and datasets: one SQLite file, or PostgreSQL for a cluster; no ML imports.
        .target(name: "Store", dependencies: [.product(name: "GRDB", package: "GRDB.swift"),
                                              .product(name: "PostgresNIO", package: "postgres-nio"),
                                              .product(name: "NIOCore", package: "swift-nio"),
                                              .product(name: "NIOPosix", package: "swift-nio"),
                                              .product(name: "Logging", package: "swift-log")]),
        // Trainer pool, training loop, checkpoints, event bus, evaluation.
        .target(name: "Trainer",
                dependencies: ["Config", "Store", "Models", "NN", "Optim", "TensorCore", "ImageData", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: cpuFlags),
        // HTTP: routes, SSE, auth, limits, problem+json, OpenAPI, static Public/. Never touches tensors.
        .target(name: "Server",
                dependencies: ["Config", "Store", "Trainer", "ImageData", "Models",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HummingbirdCore", package: "hummingbird"),
                               .product(name: "Prometheus", package: "swift-prometheus"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .executableTarget(
            name: "mimserve-bench",
            dependencies: [
                "Config", "TensorCore", "NN", "Optim", "Models", "ImageData", "Store", "Trainer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuFlags),
        .executableTarget(
            name: "mimserve",
            dependencies: [
                "Config", "Models", "NN", "TensorCore", "Server", "Store", "Trainer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuFlags),
        // Fixture reader and finite-difference checker shared by the test targets.
        .target(name: "TestSupport", dependencies: ["TensorCore"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CDNNL", "TestSupport"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "TestSupport"]),
        .testTarget(name: "ModelsTests", dependencies: ["Config", "Models", "Optim", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ImageDataTests", dependencies: ["TestSupport", "ImageData", "TensorCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ConfigTests", dependencies: ["Config"]),
        .testTarget(name: "StoreTests", dependencies: ["TestSupport", "Store", .product(name: "GRDB", package: "GRDB.swift"),
                                                       .product(name: "PostgresNIO", package: "postgres-nio")]),
        .testTarget(name: "ServerTests", dependencies: ["TestSupport", "Config", "Models", "Server", "Store", "Trainer", "ImageData", .product(name: "Crypto", package: "swift-crypto"),
                                                        .product(name: "Hummingbird", package: "hummingbird")]),
        .testTarget(name: "TrainerTests", dependencies: ["Config", "Trainer", "Store", "Models", "NN", "TensorCore", "ImageData", "TestSupport"]),
        .testTarget(name: "OptimTests", dependencies: ["CDNNL", "Optim", "TestSupport"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v6]
)
