package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
)

// ErrCIDRRangeExhausted is returned by allocate when every subnet of the
// cluster CIDR is in use. The message is Kubernetes' (cidrset).
var ErrCIDRRangeExhausted = errors.New("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")

// maxSubnetBits bounds the bitmap: a /8 cut into /24s is 65,536 subnets,
// the most Kubernetes' cidrset allows (a mask difference of 16 bits).
const maxSubnetBits = 16

// cidrSet hands out the subnets of a cluster CIDR, like Kubernetes'
// pkg/controller/nodeipam/ipam/cidrset: a bitmap, and a rotating start so
// that a just-released subnet is the last to be handed out again (other
// nodes may still route it to its old owner for a while). Not safe for
// concurrent use; the controller serialises access.
type cidrSet struct {
	cluster    netip.Prefix
	subnetBits int // node mask size
	used       []bool
	count      int // number of used subnets
	next       int // where the next search starts
}

func newCIDRSet(cluster netip.Prefix, nodeMaskSize int) (*cidrSet, error) {
	cluster = cluster.Masked()
	if !cluster.IsValid() {
		return nil, errors.New("cluster CIDR is not set")
	}
	if nodeMaskSize < cluster.Bits() || nodeMaskSize > cluster.Addr().BitLen() {
		return nil, fmt.Errorf("node CIDR mask size /%d does not fit in cluster CIDR %s", nodeMaskSize, cluster)
	}
	if nodeMaskSize-cluster.Bits() > maxSubnetBits {
		return nil, fmt.Errorf("cluster CIDR %s cut into /%d has more than %d subnets: use a larger node CIDR mask", cluster, nodeMaskSize, 1<<maxSubnetBits)
	}
	return &cidrSet{
		cluster:    cluster,
		subnetBits: nodeMaskSize,
		used:       make([]bool, 1<<(nodeMaskSize-cluster.Bits())),
	}, nil
}

// subnet returns the i-th subnet of the cluster CIDR.
func (s *cidrSet) subnet(i int) netip.Prefix {
	base := new(big.Int).SetBytes(s.cluster.Addr().AsSlice())
	off := new(big.Int).Lsh(big.NewInt(int64(i)), uint(s.cluster.Addr().BitLen()-s.subnetBits))
	b := base.Add(base, off).FillBytes(make([]byte, s.cluster.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, s.subnetBits)
}

// index returns the position of p in the set, or an error if p is not one
// of its subnets.
func (s *cidrSet) index(p netip.Prefix) (int, error) {
	if p.Bits() != s.subnetBits || p.Masked() != p || !s.cluster.Contains(p.Addr()) {
		return 0, fmt.Errorf("%s is not a /%d subnet of the cluster CIDR %s", p, s.subnetBits, s.cluster)
	}
	a := new(big.Int).SetBytes(p.Addr().AsSlice())
	base := new(big.Int).SetBytes(s.cluster.Addr().AsSlice())
	off := a.Sub(a, base)
	return int(off.Rsh(off, uint(s.cluster.Addr().BitLen()-s.subnetBits)).Int64()), nil
}

// allocate returns a free subnet and marks it used.
func (s *cidrSet) allocate() (netip.Prefix, error) {
	n := len(s.used)
	for k := range n {
		i := (s.next + k) % n
		if !s.used[i] {
			s.used[i] = true
			s.count++
			s.next = (i + 1) % n
			return s.subnet(i), nil
		}
	}
	return netip.Prefix{}, ErrCIDRRangeExhausted
}

// occupy marks p used (a subnet a node already has).
func (s *cidrSet) occupy(p netip.Prefix) error {
	i, err := s.index(p)
	if err != nil {
		return err
	}
	if !s.used[i] {
		s.used[i] = true
		s.count++
	}
	return nil
}

// release frees p.
func (s *cidrSet) release(p netip.Prefix) error {
	i, err := s.index(p)
	if err != nil {
		return err
	}
	if s.used[i] {
		s.used[i] = false
		s.count--
	}
	return nil
}
