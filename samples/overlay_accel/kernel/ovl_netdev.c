// SPDX-License-Identifier: GPL-2.0
/* overlay-accel, guest-kernel packet path (doc/overlay-accel.md): the NIC's transmit function
 * is wrapped so that a unicast frame for a MAC the VMM says is at a peer host is encapsulated
 * here, in the guest, into the TX ring the VMM half's poller drains (no VM exit while the
 * poller is awake); every other frame goes to the NIC's own transmit, as before the deploy.
 *
 * Why a wrapped ndo_start_xmit rather than a qdisc or a netfilter hook: it sees exactly the
 * NIC's frames, after the qdisc (so tc, the stack's queueing and its back-pressure are
 * unchanged), as whole Ethernet frames, needs no configuration in the guest (the interface, its
 * addresses and routes stay), and undoing it is one pointer store and an RCU grace period. */
#include <linux/etherdevice.h>
#include <linux/gfp.h>
#include <linux/if_arp.h>
#include <linux/io.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>

#include "gears/abi/overlay.h"
#include "ovl_shared.h"

int ovl_k_setup(unsigned long long *gpa, unsigned long long *size, long (*kick)(void));
int ovl_k_hook(void);
void ovl_k_unhook(void);
void ovl_k_free(void);

static void *ovl_area;
static struct net_device *ovl_dev;
static const struct net_device_ops *ovl_orig_ops;
static struct net_device_ops ovl_ops;
static DEFINE_SPINLOCK(ovl_tx_lock);
/* The C++ half's hypercall to the VMM half: the poller sleeps, or the ring is full; send now. */
static long (*ovl_kick_vmm)(void);

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

static bool ovl_ring_full(struct ovl_rings *r, u32 prod)
{
	return prod - smp_load_acquire(&r->tx.cons) >= OVL_TX_SLOTS;
}

static netdev_tx_t ovl_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct ovl_ctrl *c = ovl_ctrl();
	struct ovl_rings *r = ovl_rings();
	struct gears_overlay_hdr *h;
	struct ovl_slot *s;
	unsigned int len = skb->len;
	u32 prod;

	if (len < ETH_HLEN || len + GEARS_OVERLAY_HDR_SIZE > OVL_SLOT_DATA || !READ_ONCE(c->attached) ||
	    !ovl_remote(skb->data))
		goto nic;
	/* The NIC offers no checksum offload, so the stack finished the checksums; a partial one
	 * (a path we do not expect) is completed here rather than sent wrong. */
	if (skb->ip_summed == CHECKSUM_PARTIAL && skb_checksum_help(skb))
		goto nic;

	spin_lock(&ovl_tx_lock);
	prod = r->tx.prod;
	if (ovl_ring_full(r, prod)) {
		/* Back-pressure: the kick drains the ring on this vCPU before it returns. */
		spin_unlock(&ovl_tx_lock);
		ovl_count(OVL_G_TX_KICKS);
		ovl_kick_vmm();
		spin_lock(&ovl_tx_lock);
		prod = r->tx.prod;
		if (ovl_ring_full(r, prod)) {
			spin_unlock(&ovl_tx_lock);
			ovl_count(OVL_G_TX_FULL);
			dev->stats.tx_dropped++;
			dev_kfree_skb_any(skb);
			return NETDEV_TX_OK;
		}
	}
	s = ovl_tx_slot(prod);
	h = (struct gears_overlay_hdr *)s->data;
	h->magic = cpu_to_be32(GEARS_OVERLAY_MAGIC);
	h->version = GEARS_OVERLAY_VERSION;
	h->flags = 0;
	h->length = cpu_to_be16(len);
	h->network = cpu_to_be32(READ_ONCE(c->network));
	if (skb_copy_bits(skb, 0, s->data + GEARS_OVERLAY_HDR_SIZE, len)) {
		spin_unlock(&ovl_tx_lock);
		goto nic;
	}
	WRITE_ONCE(s->len, len + GEARS_OVERLAY_HDR_SIZE);
	smp_store_release(&r->tx.prod, prod + 1);
	spin_unlock(&ovl_tx_lock);
	ovl_count(OVL_G_TX_RING);

	/* Pairs with the poller's flag-then-look: either it sees this slot or we see the flag. */
	smp_mb();
	if (READ_ONCE(c->vmm_sleeping)) {
		ovl_count(OVL_G_TX_KICKS);
		ovl_kick_vmm();
	}
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;

nic:
	ovl_count(OVL_G_TX_FALLBACK);
	return ovl_orig_ops->ndo_start_xmit(skb, dev);
}

int ovl_k_setup(unsigned long long *gpa, unsigned long long *size, long (*kick)(void))
{
	struct ovl_ctrl *c;

	ovl_kick_vmm = kick;
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
	WRITE_ONCE(dev->netdev_ops, &ovl_ops);
	ovl_dev = dev;
	rtnl_unlock();
	pr_info("overlay-accel: %s (%pM) transmits through the overlay ring\n", dev->name, mac);
	return 0;
}

/* Gives the NIC its own transmit back; when it returns no CPU is inside ovl_xmit. */
void ovl_k_unhook(void)
{
	if (!ovl_dev)
		return;
	rtnl_lock();
	WRITE_ONCE(ovl_dev->netdev_ops, ovl_orig_ops);
	rtnl_unlock();
	synchronize_net();
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
