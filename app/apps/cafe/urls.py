from rest_framework.routers import DefaultRouter

from apps.cafe.views import OrderViewSet, TableViewSet

router = DefaultRouter()
router.register("tables", TableViewSet, basename="table")
router.register("orders", OrderViewSet, basename="order")

urlpatterns = router.urls
