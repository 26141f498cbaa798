//! The Redis test harness itself (`tests/common/redis.rs`): a private
//! server per test, on a port of its own, whose append-only file survives a
//! SIGKILL and a restart. Skipped without `redis-server` on `PATH`, unless
//! `EZQ_REQUIRE_REDIS` is set.

mod common;

use std::net::TcpStream;

use common::redis::RedisServer;
use common::within;
use redis::Commands;
use redis::streams::{StreamPendingReply, StreamRangeReply, StreamReadOptions, StreamReadReply};

#[test]
fn a_stream_and_its_group_survive_a_kill_and_a_restart() {
    within(30, || {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let port = server.port();
        let mut con = server.client().get_connection().expect("a connection");
        let _: () = con
            .xgroup_create_mkstream("jobs", "workers", "$")
            .expect("XGROUP CREATE");
        let id: String = con
            .xadd(
                "jobs",
                "*",
                &[("d", &7u64.to_le_bytes()[..]), ("o", &b"0"[..])],
            )
            .expect("XADD");
        // Delivered to a consumer and not acknowledged: pending.
        let read: StreamReadReply = con
            .xread_options(
                &["jobs"],
                &[">"],
                &StreamReadOptions::default().group("workers", "w1"),
            )
            .expect("XREADGROUP");
        assert_eq!(read.keys[0].ids[0].id, id);
        drop(con);

        // `appendfsync everysec` may still hold those writes back (it did,
        // about one run in 200): a crash loses what is not written yet.
        server.wait_aof_written();
        server.kill();
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a killed server still listens"
        );
        server.restart();
        assert_eq!(server.port(), port, "a restart keeps the port");

        let mut con = server.client().get_connection().expect("a connection");
        let range: StreamRangeReply = con.xrange_all("jobs").expect("XRANGE");
        assert_eq!(range.ids.len(), 1, "{range:?}");
        let entry = &range.ids[0];
        assert_eq!(entry.id, id);
        let d: Vec<u8> = entry.get("d").expect("field d");
        assert_eq!(u64::from_le_bytes(d.try_into().expect("8 bytes")), 7);
        let pending: StreamPendingReply = con.xpending("jobs", "workers").expect("XPENDING");
        assert_eq!(pending.count(), 1, "the delivery came back un-acked");
    });
}

#[test]
fn two_servers_started_at_once_are_apart() {
    within(30, || {
        let (Some(a), Some(b)) = (RedisServer::start(), RedisServer::start()) else {
            return;
        };
        assert_ne!(a.port(), b.port());
        assert_ne!(a.dir(), b.dir());
        assert_ne!(a.url(), b.url());
        let mut con_a = a.client().get_connection().expect("a connection to a");
        let mut con_b = b.client().get_connection().expect("a connection to b");
        let _: () = con_a.set("who", "a").expect("SET");
        let _: () = con_b.set("who", "b").expect("SET");
        let who_a: String = con_a.get("who").expect("GET");
        let who_b: String = con_b.get("who").expect("GET");
        assert_eq!((who_a.as_str(), who_b.as_str()), ("a", "b"));
    });
}

#[test]
fn a_dropped_server_is_gone_with_its_directory() {
    within(30, || {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let (port, dir) = (server.port(), server.dir().to_owned());
        let mut con = server.client().get_connection().expect("a connection");
        let _: () = con.set("k", "v").expect("SET");
        let config: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query(&mut con)
            .expect("CONFIG GET");
        assert_eq!(config, ["appendonly", "yes"]);
        assert!(
            dir.join("appendonlydir").is_dir(),
            "the AOF is in its directory"
        );
        drop(con);
        drop(server);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    });
}
