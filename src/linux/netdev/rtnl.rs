//! A small synchronous rtnetlink client (netlink-packet-route messages over a netlink-sys
//! socket): just the requests `linux.netDevices` needs — find a link by name, set it up or
//! down, move (and rename) it into another network namespace, list and add its addresses.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage as Msg;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};

/// A NETLINK_ROUTE socket bound to one network namespace (the one it was opened in).
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

/// A link as the kernel reports it.
pub struct Link {
    pub index: u32,
    pub up: bool,
}

impl Rtnl {
    /// A socket in this process's network namespace.
    pub fn here() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// A socket in the network namespace `netns`: this (single-threaded) process enters it just
    /// long enough to open the socket, which stays bound to it, and steps back.
    pub fn in_netns(netns: BorrowedFd<'_>) -> io::Result<Rtnl> {
        let own = std::fs::File::open("/proc/self/ns/net")?;
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let sock = Rtnl::here();
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            io::Error::other(format!(
                "cannot return to Berth's own network namespace: {e}"
            ))
        })?;
        sock
    }

    /// The link named `name`, or None if there is none.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(Msg::GetLink(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                Msg::NewLink(l) => Some(Link {
                    index: l.header.index,
                    up: l.header.flags.contains(LinkFlags::Up),
                }),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets link `index` up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.request(Msg::SetLink(m), NLM_F_ACK).map(drop)
    }

    /// Moves link `index` into the network namespace `netns`, named `name` there: one request,
    /// so that the name never clashes in either namespace on the way.
    pub fn move_to(&mut self, index: u32, name: &str, netns: BorrowedFd<'_>) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.request(Msg::NewLink(m), NLM_F_ACK).map(drop)
    }

    /// The addresses of link `index`.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<AddressMessage>> {
        let replies = self.request(Msg::GetAddress(AddressMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                Msg::NewAddress(a) if a.header.index == index => Some(a),
                _ => None,
            })
            .collect())
    }

    /// Adds `addr` (as listed by [`Rtnl::addresses`], from any link) to link `index`: its
    /// family, prefix, scope, local and peer address and broadcast; not its label (named after
    /// the old link) nor its lifetimes.
    pub fn add_address(&mut self, index: u32, addr: &AddressMessage) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = addr.header.family;
        m.header.prefix_len = addr.header.prefix_len;
        m.header.scope = addr.header.scope;
        m.header.index = index;
        m.attributes = addr
            .attributes
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    AddressAttribute::Address(_)
                        | AddressAttribute::Local(_)
                        | AddressAttribute::Broadcast(_)
                )
            })
            .cloned()
            .collect();
        self.request(Msg::NewAddress(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Sends one request and collects the replies up to its ACK (or the end of a dump); a
    /// NACK is its errno.
    fn request(&mut self, msg: Msg, flags: u16) -> io::Result<Vec<Msg>> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let ack = flags & NLM_F_ACK != 0;
        let mut out = Vec::new();
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let n = self.sock.recv(&mut &mut rx[..], 0)?;
            let mut off = 0;
            while off < n {
                let reply: NetlinkMessage<Msg> = NetlinkMessage::deserialize(&rx[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                Some(_) => Err(e.to_io()),
                                None => Ok(out),
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(m) => {
                            out.push(m);
                            // A plain get is answered by one message and no ACK.
                            if !dump && !ack {
                                return Ok(out);
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }
}

/// Whether an address listed by [`Rtnl::addresses`] is one runc 1.3 carries over into the
/// container: permanent (configured, not learnt) and of global scope.
pub fn carried_over(a: &AddressMessage) -> bool {
    use netlink_packet_route::address::{AddressFlags, AddressScope};
    let permanent = a
        .attributes
        .iter()
        .find_map(|x| match x {
            AddressAttribute::Flags(f) => Some(f.contains(AddressFlags::Permanent)),
            _ => None,
        })
        .unwrap_or_else(|| a.header.flags.contains(AddressHeaderFlags::Permanent));
    permanent && a.header.scope == AddressScope::Universe
}
