// Progressive enhancement for version diffs: one button per prompt diff that opens or
// closes every folded block of unchanged lines at once. Without JavaScript each fold is
// still a <details> element that opens on its own.
(function () {
    "use strict";

    function enhance(diff) {
        var folds = Array.prototype.slice.call(diff.querySelectorAll("details.ac-diff-fold"));
        var toolbar = diff.querySelector(".ac-diff-toolbar");
        if (!folds.length || !toolbar) {
            return;
        }
        var button = document.createElement("button");
        button.type = "button";
        button.className = "button ac-diff-toggle";

        function allOpen() {
            return folds.every(function (fold) { return fold.open; });
        }

        function label() {
            button.textContent = allOpen() ? "Fold unchanged lines" : "Show all lines";
            button.setAttribute("aria-pressed", allOpen() ? "true" : "false");
        }

        button.addEventListener("click", function () {
            var open = !allOpen();
            folds.forEach(function (fold) { fold.open = open; });
            label();
        });
        folds.forEach(function (fold) { fold.addEventListener("toggle", label); });
        label();
        toolbar.appendChild(button);
    }

    function init() {
        Array.prototype.forEach.call(document.querySelectorAll(".ac-diff-prompt"), enhance);
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();
