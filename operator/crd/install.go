package crd

import (
	"context"
	"errors"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// FieldManager owns the fields Setpoint sets on the CRDs it installs.
const FieldManager = "setpoint"

// Install applies the CRDs and waits, up to timeout, until each is
// Established, its names accepted and its served versions listed by API
// discovery.
func Install(ctx context.Context, cfg *rest.Config, timeout time.Duration, crds ...*apiextensionsv1.CustomResourceDefinition) error {
	if len(crds) == 0 {
		return nil
	}
	cs, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apiextensions client: %w", err)
	}
	api := cs.ApiextensionsV1().CustomResourceDefinitions()
	for _, c := range crds {
		obj := c.DeepCopy()
		obj.APIVersion = apiextensionsv1.SchemeGroupVersion.String()
		obj.Kind = "CustomResourceDefinition"
		obj.ResourceVersion = ""
		obj.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
		body, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encode crd %s: %w", c.Name, err)
		}
		_, err = api.Patch(ctx, c.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)})
		if err != nil {
			return fmt.Errorf("apply crd %s: %w", c.Name, err)
		}
	}
	for _, c := range crds {
		var last error
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			got, err := api.Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				last = err
				return false, nil
			}
			if last = established(got); errors.Is(last, errNamesRejected) {
				return false, last // a name clash does not heal by waiting
			}
			return last == nil, nil
		})
		if err != nil {
			return fmt.Errorf("wait for crd %s: %w", c.Name, errors.Join(err, last))
		}
	}
	return waitDiscovered(ctx, cfg, timeout, crds)
}

// waitDiscovered waits until API discovery lists each CRD's served
// versions. It lags Established: a client that maps kinds through
// discovery (kubectl, controller-runtime's client) could otherwise fail
// with "no matches for kind" on an object made right after Install; a
// test did, on a loaded machine.
func waitDiscovered(ctx context.Context, cfg *rest.Config, timeout time.Duration, crds []*apiextensionsv1.CustomResourceDefinition) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	for _, c := range crds {
		for _, v := range c.Spec.Versions {
			if !v.Served {
				continue
			}
			gv := c.Spec.Group + "/" + v.Name
			var last error
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
				list, err := dc.ServerResourcesForGroupVersion(gv)
				if err != nil {
					last = err
					return false, nil
				}
				for _, r := range list.APIResources {
					if r.Name == c.Spec.Names.Plural {
						return true, nil
					}
				}
				last = fmt.Errorf("%s not listed yet", c.Spec.Names.Plural)
				return false, nil
			})
			if err != nil {
				return fmt.Errorf("wait for discovery of %s in %s: %w", c.Name, gv, errors.Join(err, last))
			}
		}
	}
	return nil
}

var errNamesRejected = errors.New("names not accepted")

// established says why a CRD is not usable yet, or nil when it is.
func established(c *apiextensionsv1.CustomResourceDefinition) error {
	var est, names bool
	for _, cond := range c.Status.Conditions {
		switch cond.Type {
		case apiextensionsv1.Established:
			est = cond.Status == apiextensionsv1.ConditionTrue
		case apiextensionsv1.NamesAccepted:
			if cond.Status == apiextensionsv1.ConditionFalse {
				return fmt.Errorf("%w: %s", errNamesRejected, cond.Message)
			}
			names = cond.Status == apiextensionsv1.ConditionTrue
		}
	}
	if !est || !names {
		return errors.New("not established yet")
	}
	return nil
}
