"""The Responsible AI review on localml: the insights Azure's RAI dashboard shows, built on shap, dice-ml,
econml, fairlearn and scikit-learn (Azure's ``responsibleai`` package cannot be installed beside this stack)."""
