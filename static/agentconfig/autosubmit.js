// Progressive enhancement: a <select data-autosubmit> submits its (GET) form when it
// changes, so picking another rollback target shows its diff at once. Without
// JavaScript the form's own button does the same.
(function () {
    "use strict";

    function init() {
        Array.prototype.forEach.call(
            document.querySelectorAll("select[data-autosubmit]"),
            function (select) {
                select.addEventListener("change", function () {
                    if (select.form) {
                        select.form.submit();
                    }
                });
            }
        );
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();
