// SPDX-License-Identifier: GPL-2.0
/* overlay-accel, guest-kernel packet path (doc/overlay-accel.md): the NIC's transmit function
 * is wrapped so that a unicast frame for a MAC the VMM says is at a peer host goes into the TX
 * ring the VMM half's poller drains (no VM exit while the poller is awake, one per batch when
 * it sleeps): a complete frame encapsulated here, in the guest; a frame with offload state
 * (partial checksum, a TSO frame of up to 64 KiB) whole, with that state, for the host path to
 * finish as it does the NIC's. Every other frame goes to the NIC's own transmit, as before.
 *
 * Why a wrapped ndo_start_xmit rather than a qdisc or a netfilter hook: it sees exactly the
 * NIC's frames, after the qdisc (so tc, the stack's queueing and its back-pressure are
 * unchanged), as whole Ethernet frames, needs no configuration in the guest (the interface, its
 * addresses and routes stay), and undoing it is one pointer store and an RCU grace period.
 *
 * Receive: a NAPI context of our own on the same netdev polls the RX ring the VMM half fills.
 * It is scheduled by the guest's own traffic (a transmit, or a frame the NIC received: an
 * rx_handler) and sets guest_rx_polling, which makes the VMM put frames in the ring instead of
 * the NIC (no interrupt, no exit). It keeps polling for a window after the last frame, then
 * asks the VMM to stop (one hypercall per idle transition, not per frame) and completes. */
#include <linux/etherdevice.h>
#include <linux/gfp.h>
#include <linux/if_arp.h>
#include <linux/io.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>
#include <linux/percpu.h>

#include "gears/abi/overlay.h"
#include "ovl_shared.h"

int ovl_k_setup(unsigned long long *gpa, unsigned long long *size, long (*kick)(long full), long (*rx_stop)(void));
int ovl_k_hook(void);
void ovl_k_unhook(void);
void ovl_k_free(void);

static void *ovl_area;
static struct net_device *ovl_dev;
static const struct net_device_ops *ovl_orig_ops;
static struct net_device_ops ovl_ops;
static DEFINE_SPINLOCK(ovl_tx_lock);
/* The C++ half's hypercall to the VMM half: the poller sleeps, wake it; `full`: the ring is
 * full, send now (the ring is drained when it returns). */
static long (*ovl_kick_vmm)(long full);
/* ... and: the receive poller goes idle; returns the frames still in the ring. */
static long (*ovl_rx_stop_vmm)(void);

static struct napi_struct ovl_napi;
static bool ovl_napi_on, ovl_rx_handler_on;
static u64 ovl_rx_last_ns, ovl_rx_gap_ns = 100 * NSEC_PER_USEC;
/* How long the receive poller keeps polling an empty ring after its last frame: twice the
 * recent gap between frames (an average over ~8), within these bounds. A stream's next frame
 * then finds the poller running; an idle guest stops polling soon after its last frame. */
#define OVL_RX_WINDOW_MIN_NS (50 * NSEC_PER_USEC)
#define OVL_RX_WINDOW_MAX_NS (2 * NSEC_PER_MSEC)

static inline struct ovl_ctrl *ovl_ctrl(void) { return ovl_area; }
static inline struct ovl_rings *ovl_rings(void) { return ovl_area + OVL_RINGS_OFF; }
static inline struct ovl_slot *ovl_tx_slot(u32 i)
{
	return ovl_area + OVL_TX_OFF + (size_t)(i % OVL_TX_SLOTS) * OVL_SLOT_SIZE;
}
static inline void ovl_count(enum ovl_guest_counter c)
{
	/* Per-area counters for the VMM half's stats; a torn read there costs nothing. */
	WRITE_ONCE(ovl_ctrl()->counters[c], READ_ONCE(ovl_ctrl()->counters[c]) + 1);
}

/* Is `dst` a MAC the VMM's control plane reaches at a peer? (seqlock reader) */
static bool ovl_remote(const u8 *dst)
{
	struct ovl_ctrl *c = ovl_ctrl();
	u32 seq, n, i;
	bool hit;

	if (is_multicast_ether_addr(dst))
		return false;
	do {
		seq = smp_load_acquire(&c->routes_seq);
		if (seq & 1)
			return false; /* being rewritten: the NIC's path this once */
		n = min_t(u32, READ_ONCE(c->nroutes), OVL_MAX_ROUTES);
		hit = false;
		for (i = 0; i < n && !hit; i++)
			hit = ether_addr_equal_unaligned(c->routes[i], dst);
		smp_rmb();
	} while (READ_ONCE(c->routes_seq) != seq);
	return hit;
}

static inline struct ovl_slot *ovl_rx_slot(u32 i)
{
	return ovl_area + OVL_RX_OFF + (size_t)(i % OVL_RX_SLOTS) * OVL_SLOT_SIZE;
}

/* A frame arrived (NIC or ring) this recently: the guest is in a stream, worth polling for. */
#define OVL_RX_STREAM_GAP_NS (10 * NSEC_PER_MSEC)
static u64 ovl_rx_seen_ns;

/* Starts the receive poller unless it runs, when frames are coming in a stream (`frame`: one
 * just arrived through the NIC). Sparse traffic (a ping a second) keeps the NIC's interrupt:
 * polling would cost it an extra exit (rx_idle) per packet and save none. */
static void ovl_rx_wake(bool frame)
{
	struct ovl_ctrl *c = ovl_ctrl();
	u64 now = ktime_get_ns(), last = READ_ONCE(ovl_rx_seen_ns);

	if (frame)
		WRITE_ONCE(ovl_rx_seen_ns, now);
	if (!ovl_napi_on || READ_ONCE(c->guest_rx_polling) || now - last > OVL_RX_STREAM_GAP_NS)
		return;
	WRITE_ONCE(c->guest_rx_polling, 1);
	WRITE_ONCE(ovl_rx_last_ns, ktime_get_ns());
	napi_schedule(&ovl_napi);
}

/* Up to `budget` frames from the RX ring into the stack, through `napi` (NULL: netif_rx,
 * for what is left at unload). The VMM's indices and lengths are checked like any input. */
static int ovl_rx_ring(int budget, struct napi_struct *napi)
{
	struct ovl_rings *r = ovl_rings();
	u32 cons = r->rx.cons, prod = smp_load_acquire(&r->rx.prod);
	struct sk_buff *skb;
	int n = 0;

	if (prod - cons > OVL_RX_SLOTS) {
		ovl_count(OVL_G_RX_DROPPED);
		smp_store_release(&r->rx.cons, prod);
		return 0;
	}
	while (cons != prod && n < budget) {
		struct ovl_slot *s = ovl_rx_slot(cons);
		u32 len = READ_ONCE(s->len);

		skb = NULL;
		if (len >= ETH_HLEN && len <= OVL_SLOT_DATA)
			skb = napi ? napi_alloc_skb(napi, len) : netdev_alloc_skb(ovl_dev, len);
		if (!skb) {
			ovl_count(OVL_G_RX_DROPPED);
		} else {
			skb_put_data(skb, s->data, len);
			skb->protocol = eth_type_trans(skb, ovl_dev);
			if (napi)
				napi_gro_receive(napi, skb);
			else
				netif_rx(skb);
			ovl_count(OVL_G_RX_RING);
		}
		cons++;
		n++;
	}
	smp_store_release(&r->rx.cons, cons);
	return n;
}

static int ovl_poll(struct napi_struct *napi, int budget)
{
	int n = ovl_rx_ring(budget, napi);
	u64 now = ktime_get_ns();

	if (n) {
		u64 gap = now - READ_ONCE(ovl_rx_last_ns);

		WRITE_ONCE(ovl_rx_seen_ns, now);
		if (gap < 4 * OVL_RX_WINDOW_MAX_NS) /* a pause is not the stream's rhythm */
			ovl_rx_gap_ns = (7 * ovl_rx_gap_ns + gap) / 8;
		WRITE_ONCE(ovl_rx_last_ns, now);
	}
	if (n >= budget)
		return budget;
	if (now - READ_ONCE(ovl_rx_last_ns) < clamp_t(u64, 2 * ovl_rx_gap_ns, OVL_RX_WINDOW_MIN_NS, OVL_RX_WINDOW_MAX_NS))
		return budget; /* stay scheduled: poll again */
	/* Idle: the VMM clears guest_rx_polling under its tap's lock and says what is left. */
	if (ovl_rx_stop_vmm() > 0) {
		WRITE_ONCE(ovl_ctrl()->guest_rx_polling, 1);
		return budget;
	}
	ovl_count(OVL_G_RX_SLEEPS);
	napi_complete_done(napi, n);
	return n;
}

/* Every frame the NIC itself received: start polling the ring (the NIC keeps the frame). */
static rx_handler_result_t ovl_rx_handler(struct sk_buff **pskb)
{
	ovl_rx_wake(true);
	return RX_HANDLER_PASS;
}

/* Room for an entry of `slots` slots at `prod`? */
static bool ovl_ring_room(struct ovl_rings *r, u32 prod, u32 slots)
{
	return prod - smp_load_acquire(&r->tx.cons) + slots <= OVL_TX_SLOTS;
}

/* This CPU pushed entries since it last looked at the VMM poller's sleep flag. ndo_start_xmit
 * runs with bottom halves off, so the flag is this CPU's alone while we use it. */
static DEFINE_PER_CPU(bool, ovl_kick_due);

/* Fills the entry's description (ovl_shared.h) from the skb's offload state. False: an offload
 * the host path does not implement (the caller hands the frame to the NIC). */
static bool ovl_describe(struct ovl_slot *s, struct sk_buff *skb)
{
	s->flags = 0;
	s->gso_type = OVL_GSO_NONE;
	s->gso_size = 0;
	s->csum_start = 0;
	s->csum_offset = 0;
	s->hdr_len = 0;
	if (skb->ip_summed == CHECKSUM_PARTIAL) {
		s->flags = OVL_TX_CSUM;
		s->csum_start = skb_checksum_start_offset(skb);
		s->csum_offset = skb->csum_offset;
	}
	if (skb_is_gso(skb)) {
		const struct skb_shared_info *si = skb_shinfo(skb);

		if (si->gso_type & SKB_GSO_TCPV4)
			s->gso_type = OVL_GSO_TCPV4;
		else if (si->gso_type & SKB_GSO_TCPV6)
			s->gso_type = OVL_GSO_TCPV6;
		else
			return false;
		if (si->gso_type & SKB_GSO_TCP_ECN)
			s->gso_type |= OVL_GSO_ECN;
		s->gso_size = si->gso_size;
		s->hdr_len = min_t(unsigned int, skb_headlen(skb), 0xffff);
	}
	return true;
}

/* Puts one frame into the TX ring: OK (pushed and freed), DROPPED (the ring stayed full after
 * a kick: counted and freed), NIC (not taken: the caller hands it to the NIC). A complete frame
 * that fits one slot is encapsulated here; a frame with offload state goes whole with it (the
 * host completes checksums and segments, as for the NIC's own frames: no guest CPU spent). */
enum ovl_put { OVL_PUT_OK, OVL_PUT_DROPPED, OVL_PUT_NIC };
static enum ovl_put ovl_ring_put(struct sk_buff *skb, struct net_device *dev)
{
	struct ovl_ctrl *c = ovl_ctrl();
	struct ovl_rings *r = ovl_rings();
	unsigned int len = skb->len, data_len, off;
	bool encap = skb->ip_summed != CHECKSUM_PARTIAL && !skb_is_gso(skb) &&
		     len + GEARS_OVERLAY_HDR_SIZE <= OVL_SLOT_DATA;
	bool gso = skb_is_gso(skb);
	struct ovl_slot *s;
	u32 slots, prod, i;

	if (len > OVL_TX_MAX_FRAME)
		return OVL_PUT_NIC;
	data_len = encap ? len + GEARS_OVERLAY_HDR_SIZE : len;
	slots = ovl_tx_entry_slots(data_len);

	spin_lock(&ovl_tx_lock);
	prod = r->tx.prod;
	if (!ovl_ring_room(r, prod, slots)) {
		/* Back-pressure: this kick drains the ring on this vCPU before it returns. */
		spin_unlock(&ovl_tx_lock);
		ovl_count(OVL_G_TX_KICKS);
		ovl_kick_vmm(1);
		spin_lock(&ovl_tx_lock);
		prod = r->tx.prod;
		if (!ovl_ring_room(r, prod, slots)) {
			spin_unlock(&ovl_tx_lock);
			ovl_count(OVL_G_TX_FULL);
			dev->stats.tx_dropped++;
			dev_kfree_skb_any(skb);
			return OVL_PUT_DROPPED;
		}
	}
	s = ovl_tx_slot(prod);
	if (encap) {
		struct gears_overlay_hdr *h = (struct gears_overlay_hdr *)s->data;

		ovl_describe(s, skb);
		s->flags = OVL_TX_ENCAP;
		h->magic = cpu_to_be32(GEARS_OVERLAY_MAGIC);
		h->version = GEARS_OVERLAY_VERSION;
		h->flags = 0;
		h->length = cpu_to_be16(len);
		h->network = cpu_to_be32(READ_ONCE(c->network));
		if (skb_copy_bits(skb, 0, s->data + GEARS_OVERLAY_HDR_SIZE, len))
			goto nic;
	} else {
		if (!ovl_describe(s, skb))
			goto nic;
		for (off = 0, i = prod; off < len; off += OVL_SLOT_DATA, i++)
			if (skb_copy_bits(skb, off, ovl_tx_slot(i)->data, min_t(unsigned int, len - off, OVL_SLOT_DATA)))
				goto nic;
	}
	WRITE_ONCE(s->len, data_len);
	smp_store_release(&r->tx.prod, prod + slots);
	spin_unlock(&ovl_tx_lock);
	this_cpu_write(ovl_kick_due, true);
	ovl_count(OVL_G_TX_RING);
	if (gso)
		ovl_count(OVL_G_TX_GSO);
	dev_consume_skb_any(skb);
	return OVL_PUT_OK;
nic:
	spin_unlock(&ovl_tx_lock);
	return OVL_PUT_NIC;
}

/* After the last frame of a batch (the stack says none follows at once), whichever way it
 * went: wake the VMM's poller if it sleeps and this CPU pushed entries. One exit per batch,
 * none while the poller is awake. */
static void ovl_end_of_batch(void)
{
	if (netdev_xmit_more() || !this_cpu_read(ovl_kick_due))
		return;
	this_cpu_write(ovl_kick_due, false);
	/* Pairs with the poller's flag-then-look: either it sees the entries or we see the flag. */
	smp_mb();
	if (READ_ONCE(ovl_ctrl()->vmm_sleeping)) {
		ovl_count(OVL_G_TX_KICKS);
		ovl_kick_vmm(0);
	}
}

static netdev_tx_t ovl_xmit(struct sk_buff *skb, struct net_device *dev)
{
	if (skb->len < ETH_HLEN || !READ_ONCE(ovl_ctrl()->attached) || !ovl_remote(skb->data))
		goto nic;
	switch (ovl_ring_put(skb, dev)) {
	case OVL_PUT_OK:
		ovl_rx_wake(false);
		fallthrough;
	case OVL_PUT_DROPPED:
		ovl_end_of_batch();
		return NETDEV_TX_OK;
	case OVL_PUT_NIC:
		break;
	}

nic:
	ovl_end_of_batch(); /* what this CPU pushed before must not wait behind the NIC's frame */
	ovl_count(OVL_G_TX_FALLBACK);
	return ovl_orig_ops->ndo_start_xmit(skb, dev);
}

int ovl_k_setup(unsigned long long *gpa, unsigned long long *size, long (*kick)(long full), long (*rx_stop)(void))
{
	struct ovl_ctrl *c;

	ovl_kick_vmm = kick;
	ovl_rx_stop_vmm = rx_stop;
	ovl_area = alloc_pages_exact(OVL_AREA_SIZE, GFP_KERNEL | __GFP_ZERO);
	if (!ovl_area)
		return -ENOMEM;
	c = ovl_ctrl();
	c->area_size = OVL_AREA_SIZE;
	c->tx_slots = OVL_TX_SLOTS;
	c->rx_slots = OVL_RX_SLOTS;
	WRITE_ONCE(c->magic, OVL_MAGIC);
	*gpa = virt_to_phys(ovl_area);
	*size = OVL_AREA_SIZE;
	return 0;
}

/* Wraps the transmit of the NIC the VMM half named (by its MAC) in the control page. */
int ovl_k_hook(void)
{
	struct net_device *dev;
	u8 mac[ETH_ALEN];

	memcpy(mac, ovl_ctrl()->mac, ETH_ALEN);
	rtnl_lock();
	dev = dev_getbyhwaddr_rcu(&init_net, ARPHRD_ETHER, mac);
	if (!dev || !dev->netdev_ops || !dev->netdev_ops->ndo_start_xmit) {
		rtnl_unlock();
		pr_err("overlay-accel: no interface with address %pM\n", mac);
		return -ENODEV;
	}
	dev_hold(dev);
	ovl_orig_ops = dev->netdev_ops;
	ovl_ops = *ovl_orig_ops;
	ovl_ops.ndo_start_xmit = ovl_xmit;
	ovl_dev = dev;
	/* Receive: our NAPI context on the NIC, started by the guest's traffic. Without the
	 * rx_handler (another one owns the device: a bridge, a bond) only transmits start it. */
	netif_napi_add(dev, &ovl_napi, ovl_poll);
	napi_enable(&ovl_napi);
	ovl_napi_on = true;
	ovl_rx_handler_on = netdev_rx_handler_register(dev, ovl_rx_handler, NULL) == 0;
	WRITE_ONCE(dev->netdev_ops, &ovl_ops);
	rtnl_unlock();
	pr_info("overlay-accel: %s (%pM) transmits%s through the overlay rings\n", dev->name, mac,
		ovl_rx_handler_on ? " and receives" : "");
	return 0;
}

/* Gives the NIC its own transmit back; when it returns no CPU is inside ovl_xmit. */
void ovl_k_unhook(void)
{
	if (!ovl_dev)
		return;
	rtnl_lock();
	WRITE_ONCE(ovl_dev->netdev_ops, ovl_orig_ops);
	if (ovl_rx_handler_on)
		netdev_rx_handler_unregister(ovl_dev);
	ovl_rx_handler_on = false;
	rtnl_unlock();
	synchronize_net();
	/* No transmit or rx_handler can start the poller now: stop it, make the VMM deliver to the
	 * NIC (authoritative: cleared under its tap's lock), then take what is left in the ring. */
	ovl_napi_on = false;
	napi_disable(&ovl_napi);
	netif_napi_del(&ovl_napi);
	ovl_rx_stop_vmm();
	ovl_rx_ring(OVL_RX_SLOTS, NULL);
	pr_info("overlay-accel: %s transmits through the NIC again (ring %llu, nic %llu, full %llu, kicks %llu)\n",
		ovl_dev->name, ovl_ctrl()->counters[OVL_G_TX_RING], ovl_ctrl()->counters[OVL_G_TX_FALLBACK],
		ovl_ctrl()->counters[OVL_G_TX_FULL], ovl_ctrl()->counters[OVL_G_TX_KICKS]);
	dev_put(ovl_dev);
	ovl_dev = NULL;
}

void ovl_k_free(void)
{
	if (ovl_area)
		free_pages_exact(ovl_area, OVL_AREA_SIZE);
	ovl_area = NULL;
}
