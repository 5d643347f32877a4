"""Every registered estimator is a scikit-learn estimator: scikit-learn's own checks, as scikit-dimension runs them."""

import warnings

import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from layerscope.estimators import ESTIMATORS, MLE, PowerLaw

# scikit-learn's checks fit on 10 to 30 points with few features: the estimators that need
# more (MLE's k2 + 1 points, the power law's 3 fitted ranks) are configured small.
SMALL = {"mle": MLE(k1=2, k2=4), "alpha": PowerLaw(n_min=1, n_max=3)}
INSTANCES = [SMALL.get(name, cls()) for name, cls in ESTIMATORS.items()]


def expected_failures(estimator):
    if isinstance(estimator, PowerLaw):
        # data of two features have two eigenvalues: too few for any power-law fit
        return {
            "check_fit2d_1feature": "one feature: no spectrum to fit",
            "check_estimators_overwrite_params": "two features",
            "check_estimators_fit_returns_self": "two features",
            "check_readonly_memmap_input": "two features",
            "check_fit_idempotent": "two features",
            "check_fit_check_is_fitted": "two features",
            "check_n_features_in": "two features",
        }
    return {}


@parametrize_with_checks(INSTANCES, expected_failed_checks=expected_failures)
def test_scikit_learn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_params_round_trip_and_are_checked(name):
    est = ESTIMATORS[name]()
    params = est.get_params()
    again = clone(est)
    assert again.get_params() == params and again is not est
    assert type(est).__name__ in repr(est)
    est.check_params()  # the defaults are valid
    for key in params:  # and every parameter is checked
        with pytest.raises((ValueError, TypeError)):
            clone(est).set_params(**{key: "nonsense"}).check_params()
