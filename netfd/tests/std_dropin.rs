//! Code written against `std::net` compiles against netfd by changing only
//! its `use` line: `std_dropin/code.rs` is compiled twice, once per `use`
//! line, and each function runs on real loopback and Unix sockets against
//! both. A signature netfd lacks or shapes differently fails to compile.

// In the std build, `From<std::net::TcpStream> for net::TcpStream` is the
// identity conversion.
#[allow(clippy::useless_conversion)]
mod with_std {
    use std::net;
    use std::os::unix::net as unix;
    include!("std_dropin/code.rs");
}

mod with_netfd {
    use netfd as net;
    use netfd::unix;
    include!("std_dropin/code.rs");
}

macro_rules! both {
    ($name:ident) => {
        #[test]
        fn $name() {
            with_std::$name().expect("std");
            with_netfd::$name().expect("netfd");
        }
    };
    ($name:ident, same) => {
        #[test]
        fn $name() {
            let std = with_std::$name().expect("std");
            let netfd = with_netfd::$name().expect("netfd");
            assert_eq!(std, netfd, "netfd must answer as std does");
        }
    };
    ($name:ident, dir) => {
        #[test]
        fn $name() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("std")).unwrap();
            std::fs::create_dir(dir.path().join("netfd")).unwrap();
            with_std::$name(&dir.path().join("std")).expect("std");
            with_netfd::$name(&dir.path().join("netfd")).expect("netfd");
        }
    };
}

both!(tcp_echo);
both!(tcp_connect_timeout_and_conversions);
both!(udp);
both!(unix_stream, dir);
both!(unix_datagram, dir);
both!(nonblocking, dir);
both!(udp_multicast, same);
both!(raw_fds, dir);
both!(linux_ext);
both!(every_method, dir);
